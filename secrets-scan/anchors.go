package secretscan

// anchors is an Aho-Corasick automaton compiled to a dense DFA: one table
// lookup per input byte, whatever the number of patterns. The scanner runs
// it once over every value; only values with a hit reach a rule's checks.
type anchors struct {
	delta []int32  // state*256 + byte -> next state
	out   [][]int  // state -> pattern ids ending here (after failure closure)
	hasO  []bool   // state -> len(out) > 0
	pats  []string // pattern id -> text
}

func newAnchors(pats []string) *anchors {
	type node struct {
		next map[byte]int32
		fail int32
		out  []int
	}
	nodes := []node{{next: map[byte]int32{}}}
	for id, p := range pats {
		s := int32(0)
		for i := 0; i < len(p); i++ {
			n, ok := nodes[s].next[p[i]]
			if !ok {
				nodes = append(nodes, node{next: map[byte]int32{}})
				n = int32(len(nodes) - 1)
				nodes[s].next[p[i]] = n
			}
			s = n
		}
		nodes[s].out = append(nodes[s].out, id)
	}
	a := &anchors{
		delta: make([]int32, len(nodes)*256),
		out:   make([][]int, len(nodes)),
		hasO:  make([]bool, len(nodes)),
		pats:  pats,
	}
	// Breadth-first: failure links and DFA rows.
	queue := make([]int32, 0, len(nodes))
	for c := 0; c < 256; c++ {
		if n, ok := nodes[0].next[byte(c)]; ok {
			nodes[n].fail = 0
			a.delta[c] = n
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		nodes[s].out = append(nodes[s].out, nodes[nodes[s].fail].out...)
		for c := 0; c < 256; c++ {
			if n, ok := nodes[s].next[byte(c)]; ok {
				nodes[n].fail = a.delta[int(nodes[s].fail)*256+c]
				a.delta[int(s)*256+c] = n
				queue = append(queue, n)
			} else {
				a.delta[int(s)*256+c] = a.delta[int(nodes[s].fail)*256+c]
			}
		}
	}
	for i := range nodes {
		a.out[i] = nodes[i].out
		a.hasO[i] = len(nodes[i].out) > 0
	}
	return a
}

// mask returns the set of pattern ids (up to 64) occurring in b.
func (a *anchors) mask(b []byte) uint64 {
	var m uint64
	s := int32(0)
	d := a.delta
	for _, c := range b {
		s = d[int(s)<<8|int(c)]
		if a.hasO[s] {
			for _, id := range a.out[s] {
				m |= 1 << uint(id)
			}
		}
	}
	return m
}
