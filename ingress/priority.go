package ingress

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/events"
)

// Explicit priority on the compatible APIs. A trigger's lane is its
// explicit priority, else bulk for a broadcast and high for one user
// (orchestrator.LaneOf), whatever API it came through. The native API takes
// "priority" in its body and CloudEvents the extension attribute
// "priority"; the APIs whose bodies are someone else's shape (BuilderBot
// dispatch, Botmother, Engati v2, Recrubo flow runs) take it as the query
// parameter ?priority=high|bulk. Engati v1 is left out: its query
// parameters are the user's attributes.

// queryPriority reads ?priority=; "" when absent.
func queryPriority(c *gin.Context) (string, *apiError) {
	vs, ok := c.GetQueryArray("priority")
	if !ok {
		return "", nil
	}
	if len(vs) != 1 || !events.KnownLane(vs[0]) {
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		return "", fieldError(http.StatusUnprocessableEntity, "invalid_field", "priority",
			"priority "+strconv.Quote(clipText(v, 40))+" is not one of high, bulk (query parameter, given once)")
	}
	return vs[0], nil
}

// cePriority reads a CloudEvent's "priority" extension; "" when absent.
func cePriority(ext map[string]any) (string, bool) {
	v, ok := ext["priority"]
	if !ok {
		return "", true
	}
	s, isString := v.(string)
	if !isString || !events.KnownLane(s) {
		return "", false
	}
	return s, true
}
