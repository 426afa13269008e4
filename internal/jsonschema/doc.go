// Package jsonschema checks JSON documents against a JSON Schema (draft
// 2020-12), for tests of dstream's documented JSON (docs/status.schema.json):
// the subset of keywords that schema uses, and nothing else. A schema that
// uses another keyword is an error, not silently half-checked.
//
// Supported: type (with integer as a number without a fraction), const,
// enum, required, properties, additionalProperties (a boolean or a schema),
// items, minimum, exclusiveMinimum, minLength, format "date-time" (RFC
// 3339) and $ref to "#/$defs/<name>"; $schema, $id, title, description
// and $defs are annotations.
package jsonschema
