package microbatch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// graph is a job's compiled DStream graph: what Start derives, once, from
// what the operators declared when they were built. It never changes after.
type graph struct {
	nodes    []node
	stateful []stateful
	// inputs are what the graph (or the task's stage) reads, outputs its
	// output operations; driven: every input is an exchange, cut by batch
	// id when complete rather than at batch times.
	inputs  []input
	outputs []output
	driven  bool
	// groups: every output only collects messages for the commit, so
	// batches that wait for a commit may commit together.
	groups bool
	// span bounds how many past batches the windows need.
	span uint64
	// fingerprint describes what a checkpoint depends on; fingerprintJSON
	// is how the Store keeps it.
	fingerprint     Fingerprint
	fingerprintJSON []byte
	fingerprintHash string
}

// Named names s's operator. A stateful operator's state is stored under
// its name, so naming it keeps its state across changes to the rest of the
// graph; an unnamed one is named by its kind and its position among the
// stateful operators (updateStateByKey-1), which moves when stateful
// operators are added before it. Names are letters, digits, '.', '_' and
// '-', unique within a job.
func (s *Stream[T]) Named(name string) *Stream[T] {
	s.name = name
	return s
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// compile checks the graph and derives, for every node, what the operators'
// declarations imply: which outputs are retained (never reused), which
// nodes run while windows are rebuilt, how many consumers read each
// output, the names of stateful operators and the fingerprint.
func (j *Job) compile(replay bool) (*graph, error) {
	errs := append([]error(nil), j.buildErr...)
	if len(j.outputs) == 0 {
		errs = append(errs, &BuildError{Op: "Start", Err: errors.New("no output operations: add Pprint, ForeachBatch or Write")})
	}
	if len(j.inputs) == 0 {
		errs = append(errs, &BuildError{Op: "Start", Err: errors.New("no inputs: add Lines, Records or QueueStream")})
	}
	txn := 0
	for _, s := range j.sinks {
		if _, ok := s.(TransactionalSink); ok {
			txn++
		}
	}
	if txn > 1 {
		errs = append(errs, &BuildError{Op: "Write", Err: errors.New("a job writes to at most one transactional sink")})
	}
	g := &graph{nodes: j.nodes, stateful: j.stateful, inputs: j.inputs, outputs: j.outputs}
	if err := j.stage(g); err != nil {
		errs = append(errs, err)
		return nil, errors.Join(errs...)
	}
	deriveFlags(g.nodes, g.outputs)
	g.groups = !slices.ContainsFunc(g.outputs, func(o output) bool { return !o.collects() })
	for _, n := range g.nodes {
		g.span += n.base().windowSpan
	}
	names := map[string]bool{}
	for i, st := range g.stateful {
		b := st.base()
		name := b.name
		if name == "" {
			name = fmt.Sprintf("%s-%d", b.op, i)
		} else if !validName.MatchString(name) {
			errs = append(errs, &BuildError{Op: b.op, Err: fmt.Errorf("name %q: use 1 to 64 letters, digits, '.', '_' or '-'", name)})
		}
		if names[name] {
			errs = append(errs, &BuildError{Op: b.op, Err: fmt.Errorf("two stateful operators are named %q: names must be unique", name)})
		}
		names[name] = true
		st.setName(name)
		if err := st.checkCodecs(); err != nil {
			errs = append(errs, &BuildError{Op: name, Err: err})
		}
	}
	if len(g.stateful) > 0 && j.store == nil && !replay {
		errs = append(errs, &BuildError{Op: g.stateful[0].stateOp(), Err: errors.New("stateful operators need a checkpoint store: call Job.Checkpoint")})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g.fingerprint = j.fingerprintOf(g)
	var err error
	if g.fingerprintJSON, err = json.Marshal(g.fingerprint); err != nil {
		return nil, fmt.Errorf("microbatch: encode the graph's fingerprint: %w", err)
	}
	g.fingerprintHash = g.fingerprint.Hash()
	return g, nil
}

// stage numbers the nodes' stages (0 from the inputs, one more past each
// exchange) and, for a task of a sharded job, keeps its stage's part of the
// graph: its nodes, stateful operators and outputs, its inputs (the job's,
// or the exchange it reads), and an output sending to the exchange that
// ends it. Without a task, exchanges pass batches on.
func (j *Job) stage(g *graph) error {
	stages, keyed, last, err := j.stages()
	if err != nil {
		return err
	}
	t := j.task
	if t == nil {
		return nil
	}
	if t.Shards < 1 || t.Stage < 0 || t.Stage > last {
		return &BuildError{Op: "task", Err: fmt.Errorf("task %d of stage %d with %d shards: the graph has stages 0 to %d", t.Index, t.Stage, t.Shards, last)}
	}
	tasks := func(stage int) int {
		if keyed[stage] {
			return t.Shards
		}
		return 1
	}
	if t.Index < 0 || t.Index >= tasks(t.Stage) {
		return &BuildError{Op: "task", Err: fmt.Errorf("task %d of stage %d, which has %d tasks", t.Index, t.Stage, tasks(t.Stage))}
	}
	sink := -1
	if t.Sink != nil {
		sink = slices.Index(j.sinks, Sink(t.Sink))
		if sink < 0 {
			// A batch commits in one transaction: exchange messages and
			// the outputs of a task go to the same sink, or a crash
			// between two transactions would leave one committed (and its
			// marker saying the batch is done) and the other lost.
			for _, s := range j.sinks {
				if _, ok := s.(TransactionalSink); ok {
					return &BuildError{Op: "task", Err: errors.New("Task.Sink is not the job's transactional sink: a batch must commit in one transaction; pass the same sink to both")}
				}
			}
			j.sinks = append(j.sinks, t.Sink)
			sink = len(j.sinks) - 1
		}
	}
	in := func(n node) bool { return stages[n.base()] == t.Stage }
	g.nodes = slices.DeleteFunc(slices.Clone(j.nodes), func(n node) bool { return !in(n) })
	g.stateful = slices.DeleteFunc(slices.Clone(j.stateful), func(st stateful) bool { return !in(st) })
	g.outputs = slices.DeleteFunc(slices.Clone(j.outputs), func(o output) bool { return !in(o.node()) })
	if t.Stage > 0 {
		g.inputs, g.driven = nil, true
	}
	for _, n := range j.nodes {
		x := n.base().exch
		if x == nil {
			continue
		}
		e := x.exchange()
		switch {
		case in(n): // receiving: the stage's input
			if t.Exchange == nil || t.Topic == nil {
				return &BuildError{Op: "task", Err: errors.New("a task fed by an exchange needs Task.Exchange and Task.Topic")}
			}
			partition := int32(t.Index)
			if !e.byKey {
				partition = 0
			}
			e.src, e.topicName, e.upstream = t.Exchange(e.name, partition, tasks(t.Stage-1)), t.Topic(e.name), tasks(t.Stage-1)
			g.inputs = append(g.inputs, x.receiver())
		case in(e.parent): // sending: the stage ends here
			if sink < 0 || t.Topic == nil {
				return &BuildError{Op: "task", Err: errors.New("a task that ends at an exchange needs Task.Sink and Task.Topic")}
			}
			e.topicName, e.partitions = t.Topic(e.name), tasks(t.Stage+1)
			g.outputs = append(g.outputs, sendOutput{e: x, sink: sink})
		}
	}
	return nil
}

// stages numbers the nodes' stages, says which stages are keyed (stage 0,
// and those after an ExchangeByKey: they have a task per shard), and
// returns the last stage.
func (j *Job) stages() (stages map[*nodeBase]int, keyed map[int]bool, last int, err error) {
	stages, keyed = map[*nodeBase]int{}, map[int]bool{0: true}
	for _, n := range j.nodes {
		b := n.base()
		st := 0
		for i, p := range b.parents {
			ps := stages[p.base()]
			if i > 0 && ps != st {
				return nil, nil, 0, &BuildError{Op: b.op, Err: fmt.Errorf("it reads stages %d and %d: exchange both sides first", st, ps)}
			}
			st = ps
		}
		if b.exch != nil {
			st++
			keyed[st] = b.exch.exchange().byKey
		}
		stages[b] = st
		last = max(last, st)
	}
	return stages, keyed, last, nil
}

// Stages returns how many tasks each stage of the graph built on j has
// when the job is sharded in shards (docs/scale-out.md): shards for stage 0
// and the stages after an ExchangeByKey, one for those after a Gather.
func (j *Job) Stages(shards int) ([]int, error) {
	_, keyed, last, err := j.stages()
	if err != nil {
		return nil, err
	}
	out := make([]int, last+1)
	for st := range out {
		out[st] = 1
		if keyed[st] {
			out[st] = shards
		}
	}
	return out, nil
}

// deriveFlags sets the derived flags of nodes, which are in creation order
// (parents before children).
func deriveFlags(nodes []node, outputs []output) {
	for _, n := range nodes {
		n.base().derived = derivedFlags{}
	}
	for _, n := range nodes {
		b := n.base()
		for _, p := range b.parents {
			if p == b.lookupOf {
				continue
			}
			p.base().derived.readers++
			if b.keepsInputs {
				p.base().derived.retained = true
			}
		}
	}
	for _, o := range outputs {
		b := o.node().base()
		b.derived.readers++
		if o.keepsBatch() {
			b.derived.retained = true
		}
	}
	// A pass-through node hands its parents' memory on: if its output is
	// kept, so are theirs. Children come after parents, so one backward
	// pass carries retention up any chain.
	for i := len(nodes) - 1; i >= 0; i-- {
		if b := nodes[i].base(); b.derived.retained && b.output == outPassThrough {
			for _, p := range b.parents {
				p.base().derived.retained = true
			}
		}
	}
	// Whatever feeds a window's buffer runs while windows are rebuilt.
	var mark func(n node)
	mark = func(n node) {
		if b := n.base(); !b.derived.rebuild {
			b.derived.rebuild = true
			for _, p := range b.parents {
				mark(p)
			}
		}
	}
	for _, n := range nodes {
		if b := n.base(); b.windowSpan > 0 {
			for _, p := range b.parents {
				mark(p)
			}
		}
	}
}

// Fingerprint describes what a job's checkpoint depends on: the batch
// interval, the inputs, every stateful operator's name, kind, types,
// codecs and windows, and the windows of the graph. A checkpoint stores the
// fingerprint of the graph that wrote it; a restart compares it with its
// own (see docs/checkpoint.md).
type Fingerprint struct {
	Version    int   `json:"version"`
	IntervalMS int64 `json:"interval_ms"`
	// Stage and Shards say which task of a sharded job wrote the
	// checkpoint (0, 0: an unsharded job).
	Stage  int                `json:"stage,omitempty"`
	Shards int                `json:"shards,omitempty"`
	Inputs []string           `json:"inputs"`
	State  []StateFingerprint `json:"state,omitempty"`
	// Windows are the plain windows, in batches, in graph order.
	Windows []WindowFingerprint `json:"windows,omitempty"`
}

// StateFingerprint describes one stateful operator.
type StateFingerprint struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Key        string `json:"key"`
	Value      string `json:"value"`
	KeyCodec   string `json:"key_codec"`
	ValueCodec string `json:"value_codec"`
	// Window and Slide are a windowed operator's, in batches (0: none).
	Window uint64 `json:"window,omitempty"`
	Slide  uint64 `json:"slide,omitempty"`
	// InputSlide is how often, in batches, the operator's input produces.
	InputSlide uint64 `json:"input_slide"`
}

// WindowFingerprint describes a plain window, in batches.
type WindowFingerprint struct {
	Length uint64 `json:"length"`
	Slide  uint64 `json:"slide"`
}

// fingerprintVersion is the layout of Fingerprint.
const fingerprintVersion = 1

func (j *Job) fingerprintOf(g *graph) Fingerprint {
	fp := Fingerprint{Version: fingerprintVersion, IntervalMS: j.interval.Milliseconds()}
	if j.task != nil {
		fp.Stage, fp.Shards = j.task.Stage, j.task.Shards
	}
	for _, in := range g.inputs {
		fp.Inputs = append(fp.Inputs, in.topic())
	}
	for _, st := range g.stateful {
		fp.State = append(fp.State, st.fingerprint())
	}
	for _, n := range g.nodes {
		if b := n.base(); b.windowSpan > 0 && b.state == nil {
			fp.Windows = append(fp.Windows, WindowFingerprint{Length: b.windowLength, Slide: b.slide})
		}
	}
	return fp
}

// Hash returns a short hash of the fingerprint, for markers and logs.
func (fp Fingerprint) Hash() string {
	b, _ := json.Marshal(fp) // plain data: always encodes
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// typeName names a type for a fingerprint: package path and name.
func typeName(t reflect.Type) string {
	if t.PkgPath() != "" {
		return t.PkgPath() + "." + t.Name()
	}
	return t.String()
}

// codecName names a codec for a fingerprint.
func codecName(c any) string {
	name := reflect.TypeOf(c).String()
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i] // a generic codec's type argument is the state type, named already
	}
	return name
}

var (
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// jsonRoundTrip reports why JSON cannot store a value of type t and give it
// back whole: a field JSON skips (unexported, or tagged "-"), or a kind it
// cannot encode or decode to the same type (func, chan, complex, interface,
// unsafe pointer, a map keyed by something that is not text).
func jsonRoundTrip(t reflect.Type) error {
	return jsonRoundTripAt(t, "", map[reflect.Type]bool{})
}

func jsonRoundTripAt(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	at := func() string {
		if path == "" {
			return typeName(t)
		}
		return fmt.Sprintf("%s (at %s)", typeName(t), path)
	}
	if t.Implements(jsonMarshaler) && reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil // it encodes itself
	}
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("%s is a %s, which JSON cannot store", at(), t.Kind())
	case reflect.Interface:
		return fmt.Errorf("%s is an interface: JSON would decode it as another type", at())
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return jsonRoundTripAt(t.Elem(), path+"[]", seen)
	case reflect.Map:
		switch k := t.Key(); {
		case k.Kind() == reflect.String, k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr,
			k.Implements(textMarshaler):
		default:
			return fmt.Errorf("%s is a map keyed by %s, which JSON cannot store", at(), k)
		}
		return jsonRoundTripAt(t.Elem(), path+"[key]", seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name := path + "." + f.Name
			if !f.IsExported() && !f.Anonymous {
				return fmt.Errorf("%s has the unexported field %s, which JSON skips: export it or give the operator a codec", at(), f.Name)
			}
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == "-" {
				return fmt.Errorf("%s's field %s is tagged json:\"-\", so JSON skips it: give the operator a codec", at(), f.Name)
			}
			if err := jsonRoundTripAt(f.Type, strings.TrimPrefix(name, "."), seen); err != nil {
				return err
			}
		}
	}
	return nil
}
