package microbatch

// Pair is a key-value pair, the element type of keyed streams. It doubles as
// a 2-tuple: Join yields Pair[K, Pair[V, W]], which pprint prints as
// ('k', (v, w)), as PySpark does.
type Pair[K, V any] struct {
	Key   K
	Value V
}

// KV returns the Pair (k, v).
func KV[K, V any](k K, v V) Pair[K, V] { return Pair[K, V]{Key: k, Value: v} }
