package microbatch

import (
	"cmp"
	"encoding"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// pyRepr appends v as Python's repr would print the corresponding value, so
// that pprint output reads exactly like PySpark's: strings in single quotes,
// Pairs as tuples, slices as lists, absent Optionals as None.
func pyRepr(b *strings.Builder, v reflect.Value) {
	if text, ok := textOf(v); ok {
		pyString(b, text)
		return
	}
	switch v.Kind() {
	case reflect.Invalid:
		b.WriteString("None")
	case reflect.String:
		pyString(b, v.String())
	case reflect.Bool:
		if v.Bool() {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32:
		pyFloat(b, v.Float(), 32)
	case reflect.Float64:
		pyFloat(b, v.Float(), 64)
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("None")
			return
		}
		pyRepr(b, v.Elem())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			b.WriteByte('b')
			pyString(b, string(v.Bytes()))
			return
		}
		b.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				b.WriteString(", ")
			}
			pyRepr(b, v.Index(i))
		}
		b.WriteByte(']')
	case reflect.Map:
		// Go maps have no order; keys print sorted so that output is
		// the same on every run.
		b.WriteByte('{')
		keys := v.MapKeys()
		slices.SortFunc(keys, compareKeys)
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			pyRepr(b, k)
			b.WriteString(": ")
			pyRepr(b, v.MapIndex(k))
		}
		b.WriteByte('}')
	case reflect.Struct:
		pyStruct(b, v)
	default:
		fmt.Fprint(b, v.Interface())
	}
}

// compareKeys orders map keys: numbers and strings by value, other keys by
// their repr.
func compareKeys(a, b reflect.Value) int {
	switch a.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return cmp.Compare(a.Int(), b.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return cmp.Compare(a.Uint(), b.Uint())
	case reflect.Float32, reflect.Float64:
		return cmp.Compare(a.Float(), b.Float())
	case reflect.String:
		return cmp.Compare(a.String(), b.String())
	}
	var ra, rb strings.Builder
	pyRepr(&ra, a)
	pyRepr(&rb, b)
	return cmp.Compare(ra.String(), rb.String())
}

// pyStr appends v as Python's str would print it, as print() does: like
// repr, except that a string prints without quotes.
// textOf returns the text form of a scalar that has one (an address, an
// ID): it prints as the string a Python program would hold.
func textOf(v reflect.Value) (string, bool) {
	switch v.Kind() {
	case reflect.Invalid, reflect.Struct, reflect.Pointer, reflect.Interface:
		return "", false
	}
	if !v.Type().Implements(textMarshaler) || !v.CanInterface() {
		return "", false
	}
	text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
	return string(text), err == nil
}

func pyStr(b *strings.Builder, v reflect.Value) {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			b.WriteString("None")
			return
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.String {
		b.WriteString(v.String())
		return
	}
	if text, ok := textOf(v); ok {
		b.WriteString(text)
		return
	}
	if v.Kind() == reflect.Struct && strings.HasPrefix(v.Type().Name(), "Optional[") && v.Type().PkgPath() == pkgPath && v.Field(1).Bool() {
		pyStr(b, v.Field(0))
		return
	}
	pyRepr(b, v)
}

func pyStruct(b *strings.Builder, v reflect.Value) {
	t := v.Type()
	if st, ok := v.Interface().(fmt.Stringer); ok {
		b.WriteString(st.String())
		return
	}
	switch {
	case strings.HasPrefix(t.Name(), "Pair[") && t.PkgPath() == pkgPath:
		b.WriteByte('(')
		pyRepr(b, v.Field(0))
		b.WriteString(", ")
		pyRepr(b, v.Field(1))
		b.WriteByte(')')
		return
	case strings.HasPrefix(t.Name(), "Optional[") && t.PkgPath() == pkgPath:
		if !v.Field(1).Bool() {
			b.WriteString("None")
			return
		}
		pyRepr(b, v.Field(0))
		return
	}
	// Other structs print as a tuple of their exported fields.
	b.WriteByte('(')
	n := 0
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		if n > 0 {
			b.WriteString(", ")
		}
		pyRepr(b, v.Field(i))
		n++
	}
	if n == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
}

var pkgPath = reflect.TypeFor[Pair[int, int]]().PkgPath()

// pyString quotes s as Python's repr of a str does.
func pyString(b *strings.Builder, s string) {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x100 && !unicode.IsPrint(r):
			fmt.Fprintf(b, `\x%02x`, r)
		case r < 0x10000 && !unicode.IsPrint(r):
			fmt.Fprintf(b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
}

// pyFloat formats f as Python's repr of a float does: the shortest decimal
// that reads back as the same float of the given bit size.
func pyFloat(b *strings.Builder, f float64, bits int) {
	switch {
	case math.IsInf(f, 1):
		b.WriteString("inf")
	case math.IsInf(f, -1):
		b.WriteString("-inf")
	case math.IsNaN(f):
		b.WriteString("nan")
	default:
		s := strconv.FormatFloat(f, 'f', -1, bits)
		if abs := math.Abs(f); abs != 0 && (abs >= 1e16 || abs < 1e-4) {
			s = strconv.FormatFloat(f, 'e', -1, bits)
			// Python writes exponents with at least two digits: 1e+16, 1e-05.
			mant, exp, _ := strings.Cut(s, "e")
			sign := exp[0]
			digits := strings.TrimLeft(exp[1:], "0")
			if len(digits) < 2 {
				digits = strings.Repeat("0", 2-len(digits)) + digits
			}
			s = mant + "e" + string(sign) + digits
		} else if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		b.WriteString(s)
	}
}
