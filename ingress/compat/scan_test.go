package compat

import (
	"encoding/json"
	"reflect"
	"testing"
)

var scanSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, "{\"a\" :\t1 ,\n\"b\" : {\"x\" : [1, \"]\", {\"y\":\"}\"}] } }\r\n",
	`{"from":"1234567890","name":"John Doe","plan":"Premium","referralCode":"REF123"}`,
	`{"a":"x\"y\\","b":-1.5e3,"c":true,"d":false,"e":null,"f":[],"g":{},"a":2}`,
	`{"é":1}`, `{"a\u0041":1}`, `{"a":1}x`, `{"a":1} {}`, `[1]`, `null`, `"s"`, ``, `{`, `{"a":}`,
	`{"a":"\u00e9\ud83c\udf89"}`, `{"a":[[[["deep"]]]],"b":"x"}`, `{"a":"bad \xff"}`,
}

// scanRawObject must agree with json.Unmarshal whenever it answers.
func checkScan(t *testing.T, body []byte) {
	got, ok := scanRawObject(body)
	if !ok {
		return
	}
	var want map[string]json.RawMessage
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("%q: scanned, but json.Unmarshal fails: %v", body, err)
	}
	if want == nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %q\nwant %q", body, got, want)
	}
}

func TestScanRawObjectMatchesUnmarshal(t *testing.T) {
	for _, s := range scanSeeds {
		checkScan(t, []byte(s))
	}
	if _, ok := scanRawObject([]byte(scanSeeds[4])); !ok {
		t.Fatal("the BuilderBot example must take the fast path")
	}
}

func FuzzScanRawObject(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkScan)
}
