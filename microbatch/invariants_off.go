//go:build !invariants

package microbatch

// invariants is off: see invariants_on.go.
const invariants = false
