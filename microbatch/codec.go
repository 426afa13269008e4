package microbatch

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// Codec encodes keys and values of operator state for the Store.
type Codec[T any] interface {
	Append(dst []byte, v T) []byte
	Decode(b []byte) (T, error)
}

// DefaultCodec returns a compact binary codec for strings, byte slices,
// booleans, integers and floats, the binary form for types that have one
// (encoding.BinaryAppender and BinaryUnmarshaler), else the text form for
// types that have one (encoding.TextAppender and TextUnmarshaler), and JSON
// for every other type. State stored by a release that chose another of
// these codecs is read with that one (codecNamed) and rewritten.
func DefaultCodec[T any]() Codec[T] {
	var c any
	switch any(*new(T)).(type) {
	case string:
		c = stringCodec{}
	case []byte:
		c = bytesCodec{}
	case int:
		c = intCodec{}
	case int64:
		c = int64Codec{}
	case int32:
		c = int32Codec{}
	case uint64:
		c = uint64Codec{}
	case float64:
		c = float64Codec{}
	case bool:
		c = boolCodec{}
	default:
		if _, ok := any(new(T)).(encoding.BinaryUnmarshaler); ok {
			if _, ok := any(*new(T)).(encoding.BinaryAppender); ok {
				return binaryCodec[T]{}
			}
		}
		if _, ok := any(new(T)).(encoding.TextUnmarshaler); ok {
			if _, ok := any(*new(T)).(encoding.TextAppender); ok {
				return textCodec[T]{}
			}
		}
		return JSONCodec[T]{}
	}
	return c.(Codec[T])
}

// textCodec stores types with a text form (encoding.TextAppender and
// TextUnmarshaler) as their text: compact keys that read well in the Store.
//
// Calling AppendText on a T held in an interface copies the value to the
// heap: an allocation a key, millions a checkpoint. A codec that one
// goroutine uses at a time (owned) copies each value into its cell
// instead, which appender holds once and for all.
type textCodec[T any] struct {
	cell     *T
	appender encoding.TextAppender
}

// owned returns c for the use of one goroutine at a time, as a table's
// codecs are: a textCodec or binaryCodec gets a cell of its own.
func owned[T any](c Codec[T]) Codec[T] {
	switch c.(type) {
	case textCodec[T]:
		cell := new(T)
		return textCodec[T]{cell: cell, appender: any(cell).(encoding.TextAppender)}
	case binaryCodec[T]:
		cell := new(T)
		return binaryCodec[T]{cell: cell, appender: any(cell).(encoding.BinaryAppender)}
	}
	return c
}

// codecNamed returns the codec for T that codecName calls name, among
// those DefaultCodec chooses from: the one that wrote a stored state.
func codecNamed[T any](name string) (Codec[T], bool) {
	candidates := []Codec[T]{DefaultCodec[T](), JSONCodec[T]{}}
	if _, ok := any(new(T)).(encoding.TextUnmarshaler); ok {
		if _, ok := any(*new(T)).(encoding.TextAppender); ok {
			candidates = append(candidates, textCodec[T]{})
		}
	}
	for _, c := range candidates {
		if codecName(c) == name {
			return owned(c), true
		}
	}
	return nil, false
}

func (c textCodec[T]) Append(dst []byte, v T) []byte {
	appender := c.appender
	if c.cell == nil {
		appender = any(v).(encoding.TextAppender)
	} else {
		*c.cell = v
	}
	b, err := appender.AppendText(dst)
	if err != nil {
		// As with JSON: a value without a text form is a programming error.
		panic(fmt.Sprintf("microbatch: state key or value of type %T has no text form: %v", v, err))
	}
	return b
}

func (textCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := any(&v).(encoding.TextUnmarshaler).UnmarshalText(b)
	return v, err
}

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (stringCodec) Decode(b []byte) (string, error)    { return string(b), nil }

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(b []byte) ([]byte, error)    { return append([]byte(nil), b...), nil }

type int64Codec struct{}

func (int64Codec) Append(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }
func (int64Codec) Decode(b []byte) (int64, error) {
	v, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("decode int64 from %d bytes", len(b))
	}
	return v, nil
}

type intCodec struct{}

func (intCodec) Append(dst []byte, v int) []byte { return binary.AppendVarint(dst, int64(v)) }
func (intCodec) Decode(b []byte) (int, error) {
	v, err := int64Codec{}.Decode(b)
	return int(v), err
}

type int32Codec struct{}

func (int32Codec) Append(dst []byte, v int32) []byte { return binary.AppendVarint(dst, int64(v)) }
func (int32Codec) Decode(b []byte) (int32, error) {
	v, err := int64Codec{}.Decode(b)
	if err == nil && (v > math.MaxInt32 || v < math.MinInt32) {
		err = fmt.Errorf("decode int32: %d out of range", v)
	}
	return int32(v), err
}

type uint64Codec struct{}

func (uint64Codec) Append(dst []byte, v uint64) []byte { return binary.AppendUvarint(dst, v) }
func (uint64Codec) Decode(b []byte) (uint64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("decode uint64 from %d bytes", len(b))
	}
	return v, nil
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(v))
}
func (float64Codec) Decode(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("decode float64 from %d bytes", len(b))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

type boolCodec struct{}

func (boolCodec) Append(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}
func (boolCodec) Decode(b []byte) (bool, error) {
	if len(b) != 1 || b[0] > 1 {
		return false, fmt.Errorf("decode bool from %d bytes", len(b))
	}
	return b[0] == 1, nil
}

// JSONCodec encodes values as JSON: for structured state types.
type JSONCodec[T any] struct{}

// Append appends the JSON encoding of v.
func (JSONCodec[T]) Append(dst []byte, v T) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// State types are chosen by the job's author; one that JSON cannot
		// encode is a programming error found by the first checkpoint.
		panic(fmt.Sprintf("microbatch: state value of type %T cannot be encoded as JSON: %v", v, err))
	}
	return append(dst, b...)
}

// Decode decodes a JSON value.
func (JSONCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// pairCodec encodes a pair as its key, length-prefixed, then its value: the
// exchange's form of keyed batches.
type pairCodec[K, V any] struct {
	keys Codec[K]
	vals Codec[V]
}

func (c pairCodec[K, V]) Append(dst []byte, p Pair[K, V]) []byte {
	at := len(dst)
	dst = append(dst, 0)
	dst = c.keys.Append(dst, p.Key)
	dst = fixLength(dst, at)
	return c.vals.Append(dst, p.Value)
}

func (c pairCodec[K, V]) Decode(b []byte) (Pair[K, V], error) {
	var p Pair[K, V]
	n, l := binary.Uvarint(b)
	if l <= 0 || uint64(len(b)-l) < n {
		return p, fmt.Errorf("decode pair from %d bytes", len(b))
	}
	var err error
	if p.Key, err = c.keys.Decode(b[l : l+int(n)]); err != nil {
		return p, err
	}
	p.Value, err = c.vals.Decode(b[l+int(n):])
	return p, err
}

// binaryCodec stores types with a binary form (encoding.BinaryAppender
// and BinaryUnmarshaler) as it. Like textCodec, one that a single
// goroutine uses (owned) encodes through its cell, without an allocation.
type binaryCodec[T any] struct {
	cell     *T
	appender encoding.BinaryAppender
}

func (c binaryCodec[T]) Append(dst []byte, v T) []byte {
	appender := c.appender
	if c.cell == nil {
		appender = any(v).(encoding.BinaryAppender)
	} else {
		*c.cell = v
	}
	b, err := appender.AppendBinary(dst)
	if err != nil {
		panic(fmt.Sprintf("microbatch: a value of type %T has no binary form: %v", v, err))
	}
	return b
}

func (binaryCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := any(&v).(encoding.BinaryUnmarshaler).UnmarshalBinary(b)
	return v, err
}
