package microbatch

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// GraphChangeError reports changes to a job's graph that its checkpoint
// cannot follow: resuming would reinterpret the stored state. Each change
// names what changed and the command that resolves it. It is permanent.
type GraphChangeError struct {
	Changes []string
}

// Is makes a GraphChangeError permanent.
func (e *GraphChangeError) Is(target error) bool { return target == ErrPermanent }

func (e *GraphChangeError) Error() string {
	return "the job changed in ways its checkpoint cannot follow (see docs/checkpoint.md):\n- " +
		strings.Join(e.Changes, "\n- ")
}

// graphDiff is what a restart does about the stored fingerprint.
type graphDiff struct {
	// store: the checkpoint's fingerprint differs (or is missing): the
	// next commit stores the new one.
	store bool
	// startOver names the stateful operators whose stored state is not
	// used: new ones (they start empty, from their initial state, or, if
	// windowed, rebuilt from the plans), and windowed ones whose window
	// changed (rebuilt).
	startOver map[string]bool
	// recode names the stateful operators whose state is stored with
	// other codecs than the job's (a release that chose other default
	// codecs wrote it), which they can read: their codec names, key and
	// value. They read it with those and rewrite it whole.
	recode map[string][2]string
	// windowsChanged: a plain window's length or slide changed; it is
	// rebuilt from plans like any window, but those plans may be gone.
	windowsChanged bool
	// notes describe the safe changes, for the log.
	notes []string
	// adopt: the checkpoint records no graph (a new job, or a first batch
	// completed by recovery): stored state is used where there is some,
	// and operators without any start over.
	adopt bool
}

// diffGraphs compares the stored fingerprint (nil: none) with the job's;
// reads reports whether the stateful operator op can read state stored
// with the codecs named key and value.
func diffGraphs(stored []byte, now Fingerprint, reads func(op, key, value string) bool) (graphDiff, error) {
	d := graphDiff{startOver: map[string]bool{}, recode: map[string][2]string{}}
	if stored == nil {
		d.store, d.adopt = true, true
		return d, nil
	}
	var old Fingerprint
	if err := json.Unmarshal(stored, &old); err != nil {
		return d, fmt.Errorf("microbatch: decode the checkpoint's graph fingerprint: %w: %w", err, ErrPermanent)
	}
	var refused []string
	if old.IntervalMS != now.IntervalMS {
		refused = append(refused, fmt.Sprintf("the batch interval changed from %dms to %dms: batch times and windows are multiples of it; "+
			"`dstream reset --yes` starts the job over (its state goes)", old.IntervalMS, now.IntervalMS))
	}
	if old.Shards != now.Shards || old.Stage != now.Stage {
		refused = append(refused, fmt.Sprintf("the job's shards changed from %d to %d (stage %d to %d): its keys belong to other tasks now; "+
			"`dstream reset --yes` starts the job over", old.Shards, now.Shards, old.Stage, now.Stage))
	}
	for _, topic := range old.Inputs {
		if !slices.Contains(now.Inputs, topic) {
			refused = append(refused, fmt.Sprintf("the input topic %s is no longer read: the state was counted from it; "+
				"`dstream reset --yes` starts the job over on the new input", topic))
		}
	}
	for _, topic := range now.Inputs {
		if !slices.Contains(old.Inputs, topic) {
			d.notes = append(d.notes, fmt.Sprintf("input topic %s added: it starts at the start offset", topic))
		}
	}
	byName := func(states []StateFingerprint, name string) (StateFingerprint, bool) {
		for _, s := range states {
			if s.Name == name {
				return s, true
			}
		}
		return StateFingerprint{}, false
	}
	for _, was := range old.State {
		if _, ok := byName(now.State, was.Name); !ok {
			refused = append(refused, fmt.Sprintf("the stateful operator %q (%s) was removed: its state would be lost; "+
				"`dstream reset --drop-state %s --yes` accepts that", was.Name, was.Kind, was.Name))
		}
	}
	for _, is := range now.State {
		was, ok := byName(old.State, is.Name)
		switch {
		case !ok:
			d.startOver[is.Name] = true
			if is.Window > 0 && is.Kind != "window" {
				d.notes = append(d.notes, fmt.Sprintf("stateful operator %q (%s) added: its window is rebuilt from the recorded plans", is.Name, is.Kind))
			} else {
				d.notes = append(d.notes, fmt.Sprintf("stateful operator %q (%s) added: it starts empty, or from its initial state", is.Name, is.Kind))
			}
		case was.Kind != is.Kind && windowKinds[was.Kind] && windowKinds[is.Kind] && was.Key == is.Key && was.Value == is.Value:
			// Between the incremental and the recomputed form (a release
			// that chose the other, or a window that got longer or
			// shorter): the stored state, if any, is the incremental
			// one's, which neither reads as it is.
			d.startOver[is.Name] = true
			how := "reduced from its batches at every slide"
			if is.Kind != recomputedWindowKind {
				how = "kept incrementally"
			}
			d.notes = append(d.notes, fmt.Sprintf("the window of %q (%d/%d batches, length/slide) is now %s: it is rebuilt from the recorded plans",
				is.Name, is.Window, is.Slide, how))
		case was.Kind == is.Kind && was.Key == is.Key && was.Value == is.Value &&
			(was.KeyCodec != is.KeyCodec || was.ValueCodec != is.ValueCodec) && reads(is.Name, was.KeyCodec, was.ValueCodec):
			d.recode[is.Name] = [2]string{was.KeyCodec, was.ValueCodec}
			d.notes = append(d.notes, fmt.Sprintf("the state of %q is stored as %s, %s: it is read as such and rewritten as %s, %s by the next commit",
				is.Name, was.KeyCodec, was.ValueCodec, is.KeyCodec, is.ValueCodec))
		case was.Kind != is.Kind || was.Key != is.Key || was.Value != is.Value || was.KeyCodec != is.KeyCodec || was.ValueCodec != is.ValueCodec:
			refused = append(refused, fmt.Sprintf("the stateful operator %q changed from %s of %s→%s (%s, %s) to %s of %s→%s (%s, %s): "+
				"its stored state cannot be read as the new one; `dstream reset --drop-state %s --yes` starts it empty",
				is.Name, was.Kind, was.Key, was.Value, was.KeyCodec, was.ValueCodec, is.Kind, is.Key, is.Value, is.KeyCodec, is.ValueCodec, is.Name))
		case is.Kind == "window" && (was.Window != is.Window || was.Slide != is.Slide || was.InputSlide != is.InputSlide):
			refused = append(refused, fmt.Sprintf("the window %q over a stateful operator's output changed from %d/%d to %d/%d batches (length/slide): "+
				"it keeps the batches it spans, which cannot be recomputed; `dstream reset --drop-state %s --yes` starts it empty",
				is.Name, was.Window, was.Slide, is.Window, is.Slide, is.Name))
		case is.Window > 0 && (was.Window != is.Window || was.Slide != is.Slide || was.InputSlide != is.InputSlide):
			d.startOver[is.Name] = true
			d.notes = append(d.notes, fmt.Sprintf("the window of %q changed from %d/%d to %d/%d batches (length/slide): it is rebuilt from the recorded plans",
				is.Name, was.Window, was.Slide, is.Window, is.Slide))
		case was.InputSlide != is.InputSlide:
			refused = append(refused, fmt.Sprintf("the input of the stateful operator %q now produces every %d batches, not every %d: "+
				"its next update would count batches twice or never; `dstream reset --drop-state %s --yes` starts it empty",
				is.Name, is.InputSlide, was.InputSlide, is.Name))
		}
	}
	if !slices.Equal(old.Windows, now.Windows) {
		d.windowsChanged = true
		d.notes = append(d.notes, "windows changed: they are rebuilt from the recorded plans")
	}
	if len(refused) > 0 {
		return d, &GraphChangeError{Changes: refused}
	}
	d.store = !fingerprintsEqual(old, now)
	return d, nil
}

// recomputedWindowKind is the kind of a ReduceByKeyAndWindow that reduces
// its window from its batches at every slide (recomputedWindow).
const recomputedWindowKind = "reduceByKeyAndWindow (recomputed)"

// windowKinds are the kinds of the two forms of ReduceByKeyAndWindow.
var windowKinds = map[string]bool{"reduceByKeyAndWindow": true, recomputedWindowKind: true}

func fingerprintsEqual(a, b Fingerprint) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
