package microbatch

import (
	"context"
	"errors"
	"fmt"
)

// Replay recomputes the batches of plans, in order, without a Store and
// without writing to any sink: for audits and debugging. Operator state
// starts empty at the first plan, so stateful results equal the live ones
// only when plans start at batch 1. emit receives, for every batch, the
// messages each Write operation would have sent (by sink, in declaration
// order). Pprint and ForeachBatch run as usual.
func (j *Job) Replay(ctx context.Context, plans []Plan, emit func(b BatchInfo, messages []Message) error) error {
	j.mu.Lock()
	if j.mu.started {
		j.mu.Unlock()
		return errors.New("microbatch: job already started")
	}
	g, err := j.compile(true)
	if err != nil {
		j.mu.Unlock()
		return err
	}
	j.graph, j.mu.started = g, true
	j.mu.Unlock()
	for _, st := range g.stateful {
		st.startOver(0)
	}
	for i, p := range plans {
		if i > 0 && p.ID != plans[i-1].ID+1 {
			return fmt.Errorf("replay: plan %d follows plan %d: plans must be consecutive", p.ID, plans[i-1].ID)
		}
		r := &batchRun{job: j, id: p.ID, plan: p, messages: make([][]Message, len(j.sinks))}
		if err := j.load(ctx, r); err != nil {
			return err
		}
		for _, n := range g.nodes {
			n.step(r)
		}
		for _, o := range g.outputs {
			if err := o.run(ctx, r); err != nil {
				return fmt.Errorf("replay batch %d: output: %w", p.ID, err)
			}
		}
		for _, n := range g.nodes {
			n.reset()
		}
		for _, st := range g.stateful {
			st.committed()
		}
		var all []Message
		for _, m := range r.messages {
			all = append(all, m...)
		}
		if err := emit(BatchInfo{Plan: p, Graph: g.fingerprintHash}, all); err != nil {
			return err
		}
	}
	return nil
}
