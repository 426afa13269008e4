package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Schema is a parsed JSON Schema.
type Schema struct {
	root map[string]any
}

// Parse parses a schema and checks that it uses only supported keywords.
func Parse(data []byte) (*Schema, error) {
	v, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("jsonschema: %w", err)
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("jsonschema: the schema is not an object")
	}
	s := &Schema{root: root}
	if err := s.checkKeywords(root, "#"); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks a JSON document against the schema and returns every
// violation, each naming its place in the document ("$.job.lag[0].end").
func (s *Schema) Validate(doc []byte) error {
	v, err := decode(doc)
	if err != nil {
		return fmt.Errorf("jsonschema: the document: %w", err)
	}
	var errs []error
	s.validate(s.root, v, "$", &errs)
	return errors.Join(errs...)
}

func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

var annotations = []string{"$schema", "$id", "title", "description", "$defs"}

var keywords = []string{"type", "const", "enum", "required", "properties", "additionalProperties", "items",
	"minimum", "exclusiveMinimum", "minLength", "format", "$ref"}

// checkKeywords refuses keywords the checker does not implement.
func (s *Schema) checkKeywords(sch map[string]any, at string) error {
	for _, k := range slices.Sorted(maps.Keys(sch)) {
		if !slices.Contains(keywords, k) && !slices.Contains(annotations, k) {
			return fmt.Errorf("jsonschema: %s: keyword %q is not supported", at, k)
		}
	}
	if f, ok := sch["format"]; ok && f != "date-time" {
		return fmt.Errorf("jsonschema: %s: format %v is not supported", at, f)
	}
	var subs []struct {
		at  string
		sch any
	}
	for _, key := range []string{"properties", "$defs"} {
		if m, ok := sch[key].(map[string]any); ok {
			for name, sub := range m {
				subs = append(subs, struct {
					at  string
					sch any
				}{at + "/" + key + "/" + name, sub})
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if sub, ok := sch[key].(map[string]any); ok {
			subs = append(subs, struct {
				at  string
				sch any
			}{at + "/" + key, sub})
		}
	}
	if ref, ok := sch["$ref"].(string); ok {
		if _, err := s.resolve(ref); err != nil {
			return fmt.Errorf("jsonschema: %s: %w", at, err)
		}
	}
	for _, sub := range subs {
		m, ok := sub.sch.(map[string]any)
		if !ok {
			return fmt.Errorf("jsonschema: %s: not a schema object", sub.at)
		}
		if err := s.checkKeywords(m, sub.at); err != nil {
			return err
		}
	}
	return nil
}

func (s *Schema) resolve(ref string) (map[string]any, error) {
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	if !ok {
		return nil, fmt.Errorf("$ref %q: only #/$defs/<name> is supported", ref)
	}
	defs, _ := s.root["$defs"].(map[string]any)
	def, ok := defs[name].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("$ref %q: no such definition", ref)
	}
	return def, nil
}

func (s *Schema) validate(sch map[string]any, v any, at string, errs *[]error) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: "+format, append([]any{at}, args...)...))
	}
	if ref, ok := sch["$ref"].(string); ok {
		def, err := s.resolve(ref)
		if err != nil {
			fail("%v", err)
			return
		}
		s.validate(def, v, at, errs)
	}
	if t, ok := sch["type"]; ok && !hasType(t, v) {
		fail("%s is not of type %v", kind(v), t)
		return
	}
	if c, ok := sch["const"]; ok && !equal(c, v) {
		fail("%v is not %v", v, c)
	}
	if e, ok := sch["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return equal(x, v) }) {
		fail("%v is not one of %v", v, e)
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := sch["properties"].(map[string]any)
		for _, r := range asStrings(sch["required"]) {
			if _, ok := v[r]; !ok {
				fail("lacks %q", r)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(v)) {
			if sub, ok := props[name].(map[string]any); ok {
				s.validate(sub, v[name], at+"."+name, errs)
				continue
			}
			switch ap := sch["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("has %q, which the schema does not list", name)
				}
			case map[string]any:
				s.validate(ap, v[name], at+"."+name, errs)
			}
		}
	case []any:
		if items, ok := sch["items"].(map[string]any); ok {
			for i, x := range v {
				s.validate(items, x, fmt.Sprintf("%s[%d]", at, i), errs)
			}
		}
	case json.Number:
		x, _ := v.Float64()
		if m, ok := number(sch["minimum"]); ok && x < m {
			fail("%v is below the minimum %v", v, m)
		}
		if m, ok := number(sch["exclusiveMinimum"]); ok && x <= m {
			fail("%v is not above %v", v, m)
		}
	case string:
		if m, ok := number(sch["minLength"]); ok && float64(utf8.RuneCountInString(v)) < m {
			fail("%q is shorter than %v", v, m)
		}
		if sch["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				fail("%q is not an RFC 3339 date-time", v)
			}
		}
	}
}

// hasType reports whether v has the type t names (a name or a list).
func hasType(t, v any) bool {
	names, ok := t.([]any)
	if !ok {
		names = []any{t}
	}
	for _, n := range names {
		switch n {
		case "object":
			if _, ok := v.(map[string]any); ok {
				return true
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "boolean":
			if _, ok := v.(bool); ok {
				return true
			}
		case "null":
			if v == nil {
				return true
			}
		case "number":
			if _, ok := v.(json.Number); ok {
				return true
			}
		case "integer":
			if n, ok := v.(json.Number); ok {
				x, err := n.Float64()
				if err == nil && x == math.Trunc(x) {
					return true
				}
			}
		}
	}
	return false
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	case json.Number:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func equal(a, b any) bool {
	an, aok := number(a)
	bn, bok := number(b)
	if aok && bok {
		return an == bn
	}
	return fmt.Sprint(a) == fmt.Sprint(b) && kind(a) == kind(b)
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	x, err := n.Float64()
	return x, err == nil
}

func asStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
