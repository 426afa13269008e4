package microbatch

import (
	"reflect"
	"unsafe"
)

// poison overwrites the elements of s so that whoever still reads them sees
// garbage: 0xdb bytes for types without pointers, zero values (nil
// pointers, empty strings) for the others, which the collector must be
// able to scan. Used under the invariants build tag.
func poison[T any](s []T) {
	s = s[:cap(s)]
	if len(s) == 0 {
		return
	}
	var zero T
	if hasPointers(reflect.TypeOf(&zero).Elem()) {
		clear(s)
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
	for i := range b {
		b[i] = 0xdb
	}
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func,
		reflect.Interface, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}
