package stack

import (
	"net/netip"
	"sync"
	"testing"

	"utcp/tun/tuntest"
)

var (
	addrA = netip.MustParseAddr("198.18.0.1")
	addrB = netip.MustParseAddr("198.18.0.2")
)

// pair is two stacks joined by an in-memory pipe, optionally lossy.
type pair struct {
	a, b   *Stack
	mu     sync.Mutex
	events []TraceEvent
}

func (p *pair) trace(ev TraceEvent) {
	p.mu.Lock()
	ev.Seg = nil
	p.events = append(p.events, ev)
	p.mu.Unlock()
}

// transitions returns the "FROM>TO" list seen by the stack at local.
func (p *pair) transitions(local netip.AddrPort) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, ev := range p.events {
		if ev.Local == local {
			out = append(out, ev.From.String()+">"+ev.To.String())
		}
	}
	return out
}

type pairOpts struct {
	faults *tuntest.Faults // applied to both directions (each with its own seed)
	cfgA   func(*Config)
	cfgB   func(*Config)
}

func newPair(t *testing.T, o pairOpts) *pair {
	t.Helper()
	la, lb := tuntest.NewPipe(1500, 4096)
	var linkA, linkB Link = la, lb
	if o.faults != nil {
		fa, fb := *o.faults, *o.faults
		fa.Logf, fb.Logf = t.Logf, t.Logf
		fb.Seed = fa.Seed + 1
		linkA = tuntest.NewLossy(la, fa)
		linkB = tuntest.NewLossy(lb, fb)
	}
	linkA, linkB = &logLink{Link: linkA, name: "A"}, &logLink{Link: linkB, name: "B"}
	p := &pair{}
	ca := Config{Link: linkA, Addr: addrA, Seed: 1, Trace: p.trace}
	cb := Config{Link: linkB, Addr: addrB, Seed: 2, Trace: p.trace}
	if o.cfgA != nil {
		o.cfgA(&ca)
	}
	if o.cfgB != nil {
		o.cfgB(&cb)
	}
	var err error
	if p.a, err = New(ca); err != nil {
		t.Fatal(err)
	}
	if p.b, err = New(cb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.a.Close()
		p.b.Close()
	})
	return p
}
