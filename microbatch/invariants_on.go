//go:build invariants

package microbatch

// invariants is set by the invariants build tag (pebble's model): memory an
// operator declared reusable is poisoned instead of reused, so that a
// consumer that keeps it past its batch (a wrong declaration) reads garbage
// and fails its test, instead of silently reading the next batch's data.
const invariants = true
