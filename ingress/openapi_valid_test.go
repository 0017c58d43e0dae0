package ingress

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/stretchr/testify/require"
)

// TestOpenAPIDocumentValid validates /openapi.json against the OpenAPI 3.1
// schema with a real validator (pb33f/libopenapi-validator), and checks
// the house rules: every operation has an operationId (unique), every
// response a schema (204 aside), and every operation its security.
func TestOpenAPIDocumentValid(t *testing.T) {
	doc, err := libopenapi.NewDocument(openAPI)
	require.NoError(t, err)
	v, errs := validator.NewValidator(doc)
	require.Empty(t, errs)
	ok, verrs := v.ValidateDocument()
	for _, e := range verrs {
		for _, se := range e.SchemaValidationErrors {
			t.Errorf("%s: %s (%s, line %d)", e.Message, se.Reason, se.FieldPath, se.Line)
		}
		if len(e.SchemaValidationErrors) == 0 {
			t.Errorf("%s: %s", e.Message, e.Reason)
		}
	}
	require.True(t, ok)

	var d struct {
		Paths map[string]map[string]struct {
			OperationID string                     `json:"operationId"`
			Security    *[]map[string][]string     `json:"security"`
			Responses   map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
		Components struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(openAPI, &d))
	seen := map[string]string{}
	for path, ops := range d.Paths {
		for method, op := range ops {
			where := fmt.Sprintf("%s %s", method, path)
			require.NotEmpty(t, op.OperationID, "%s has no operationId", where)
			require.Empty(t, seen[op.OperationID], "operationId %s used by %s and %s", op.OperationID, seen[op.OperationID], where)
			seen[op.OperationID] = where
			require.NotNil(t, op.Security, "%s declares no security (public routes say security: [])", where)
			for code, raw := range op.Responses {
				var r struct {
					Ref     string                          `json:"$ref"`
					Content map[string]struct{ Schema any } `json:"content"`
				}
				require.NoError(t, json.Unmarshal(raw, &r))
				if r.Ref != "" || code == "204" {
					continue
				}
				require.NotEmpty(t, r.Content, "%s %s has no content", where, code)
				for ct, c := range r.Content {
					require.NotNil(t, c.Schema, "%s %s %s has no schema", where, code, ct)
				}
			}
		}
	}
}
