package jsonschema_test

import (
	"strings"
	"testing"

	"github.com/dstream-io/dstream/internal/jsonschema"
)

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "role", "at", "items"],
  "additionalProperties": false,
  "properties": {
    "schema": {"const": "x/v1"},
    "id": {"type": "integer", "minimum": 1},
    "rate": {"type": "number", "exclusiveMinimum": 0},
    "role": {"enum": ["active", "standby"]},
    "at": {"type": ["string", "null"], "format": "date-time"},
    "name": {"type": "string", "minLength": 2},
    "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {
    "item": {"type": "object", "required": ["n"], "additionalProperties": false, "properties": {"n": {"type": "integer"}}}
  }
}`

func TestValidate(t *testing.T) {
	s, err := jsonschema.Parse([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		name, doc string
		want      []string // each in the error; none: valid
	}{
		{"valid", `{"schema":"x/v1","id":1,"rate":0.5,"role":"active","at":"2026-11-24T05:31:50.5Z","name":"ab","items":[{"n":2}]}`, nil},
		{"null time", `{"id":7,"role":"standby","at":null,"items":[]}`, nil},
		{"missing", `{"id":1,"items":[]}`, []string{`$: lacks "role"`, `$: lacks "at"`}},
		{"extra field", `{"id":1,"role":"active","at":null,"items":[],"Extra":1}`, []string{`$: has "Extra", which the schema does not list`}},
		{"integer with a fraction", `{"id":1.5,"role":"active","at":null,"items":[]}`, []string{"$.id: number is not of type integer"}},
		{"below minimum", `{"id":0,"role":"active","at":null,"items":[]}`, []string{"$.id: 0 is below the minimum 1"}},
		{"not above", `{"id":1,"rate":0,"role":"active","at":null,"items":[]}`, []string{"$.rate: 0 is not above 0"}},
		{"wrong const", `{"schema":"x/v2","id":1,"role":"active","at":null,"items":[]}`, []string{"$.schema: x/v2 is not x/v1"}},
		{"not in enum", `{"id":1,"role":"leader","at":null,"items":[]}`, []string{"$.role: leader is not one of"}},
		{"nanoseconds as a number", `{"id":1,"role":"active","at":12345,"items":[]}`, []string{"$.at: number is not of type"}},
		{"not RFC 3339", `{"id":1,"role":"active","at":"2026-11-24 05:31:50","items":[]}`, []string{`$.at: "2026-11-24 05:31:50" is not an RFC 3339 date-time`}},
		{"too short", `{"id":1,"role":"active","at":null,"name":"a","items":[]}`, []string{`$.name: "a" is shorter than 2`}},
		{"through a ref", `{"id":1,"role":"active","at":null,"items":[{"n":1},{"N":1}]}`, []string{`$.items[1]: lacks "n"`, `$.items[1]: has "N"`}},
		{"not an object", `[1]`, []string{"$: array is not of type object"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			err := s.Validate([]byte(test.doc))
			if len(test.want) == 0 {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range test.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseRefusesWhatItCannotCheck(t *testing.T) {
	for _, test := range []struct{ schema, want string }{
		{`{"type":"object","properties":{"a":{"type":"string","pattern":"^x"}}}`, `#/properties/a: keyword "pattern" is not supported`},
		{`{"oneOf":[]}`, `#: keyword "oneOf" is not supported`},
		{`{"type":"string","format":"email"}`, "format email is not supported"},
		{`{"items":{"$ref":"#/definitions/x"}}`, "only #/$defs/<name> is supported"},
		{`{"items":{"$ref":"#/$defs/x"}}`, `$ref "#/$defs/x": no such definition`},
	} {
		_, err := jsonschema.Parse([]byte(test.schema))
		if err == nil || !strings.Contains(err.Error(), test.want) {
			t.Errorf("Parse(%s): %v, want %q", test.schema, err, test.want)
		}
	}
}
