package routing

import (
	"cmp"
	"slices"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The incremental path of a Translator: a call whose snapshot differs from
// the previous call's in a few Ingresses and EndpointSlices only (the same
// IngressClasses, Services, Secrets and options, nothing held, no Gateway
// API route) costs what changed, not what the cluster holds. It finds the
// changed objects by comparing the lists position by position (the data
// client keeps its lists in a stable order, replacing a changed object in
// place), and then works on the changed Ingresses' names and host-and-path
// keys alone: their entries, the claims of the keys their rules name
// (before and after), the routes whose winner changed, spliced into the
// sorted route list, the backends those routes name and those whose
// slices changed, Table.Served, and the problems, kept as counted
// contributions. Anything else (more changes than a sixteenth of a list, a
// changed Ingress whose name is duplicated, colliding route IDs, another
// kind changed) is the full path's, which then leaves what this path
// starts from (rememberFull). Both return exactly what Translate returns;
// TestTranslatorAgreesWithTranslate checks it after each step of random
// change sequences, through both paths.

// incrState is what the incremental path starts from.
type incrState struct {
	ok      bool // the previous call left a state the incremental path can start from
	renamed bool // the previous call renamed colliding route IDs
	// The previous call's Ingresses and IngressClasses, and its default
	// certificate (the other options are in Translator.opts).
	ingresses   []*networkingv1.Ingress
	classes     []*networkingv1.IngressClass
	defaultCert types.NamespacedName
	// problems counts every contribution to the previous table's problems
	// (Table.Problems is them, each once, sorted); certProblems and
	// gwProblems are those of the certificates and the Gateway API, made
	// again on every call.
	problems     map[Problem]int
	certProblems []Problem
	gwProblems   []Problem
	// tlsOrder are the Ingresses of Translator.order with spec.tls.
	tlsOrder []*ingressEntry
	// Calls the incremental path answered, for tests.
	calls int
}

// claimList is the claimants of one key (a host and path, or the default
// backend) in precedence order, linked through claimant.next: the first
// wins, the others lose to it.
type claimList struct{ first, last *claimant }

func (l *claimList) push(c *claimant) {
	c.next = nil
	if l.first == nil {
		l.first = c
	} else {
		l.last.next = c
	}
	l.last = c
}

func (l claimList) all() []*claimant {
	var out []*claimant
	for c := l.first; c != nil; c = c.next {
		out = append(out, c)
	}
	return out
}

// lostProblem is the problem of a claimant that lost its key to first.
func lostProblem(c, first *claimant) Problem {
	if c.idx < 0 {
		return ingressProblem(c.owner.ref(), DuplicateDefaultBackend,
			"ingress %s, which takes precedence, already defines the default backend; this one is ignored", first.owner.ref())
	}
	return ingressProblem(c.owner.ref(), Conflict, "host %q path %q (%s) is already routed by %s; path ignored",
		c.rt.Host, c.rt.Path, c.rt.PathType, describeOwner(first.owner.ref(), c.owner.ref()))
}

// claimProblems are the problems a key's claimants contribute: the
// winner's backend problem, and each loser's.
func claimProblems(list []*claimant, out []Problem) []Problem {
	if len(list) == 0 {
		return out
	}
	if p := list[0].problem; p != nil {
		out = append(out, *p)
	}
	for _, c := range list[1:] {
		out = append(out, lostProblem(c, list[0]))
	}
	return out
}

func compareClaimants(a, b *claimant) int {
	return cmp.Or(compareIngressPrecedence(a.owner.ing, b.owner.ing), cmp.Compare(a.idx, b.idx))
}

func compareWinners(a, b *claimant) int {
	// The IDs differ but in the astronomically rare collision: the origins
	// are made into routes only then.
	if c := strings.Compare(a.rt.Eskip.Id, b.rt.Eskip.Id); c != 0 {
		return c
	}
	return compareOrigin(a.route(), b.route())
}

func compareEntries(a, b *ingressEntry) int { return compareIngressPrecedence(a.ing, b.ing) }

// rememberFull records, at the end of a full call, what the next call's
// incremental path starts from. problems are every contribution, repeats
// included.
func (t *Translator) rememberFull(s *Snapshot, o Options, order []*ingressEntry, problems, certProblems, gwProblems []Problem, ok, renamed bool) {
	in := &t.incr
	in.ok, in.renamed = ok && !renamed, renamed
	in.ingresses = append(in.ingresses[:0], s.Ingresses...)
	in.classes = append(in.classes[:0], s.IngressClasses...)
	in.defaultCert = o.DefaultCertificate
	if in.problems == nil {
		in.problems = map[Problem]int{}
	}
	clear(in.problems)
	for _, p := range problems {
		in.problems[p]++
	}
	in.certProblems, in.gwProblems = certProblems, gwProblems
	in.tlsOrder = in.tlsOrder[:0]
	for _, e := range order {
		if len(e.ing.Spec.TLS) > 0 {
			in.tlsOrder = append(in.tlsOrder, e)
		}
	}
}

// listChanges returns the elements of prev that next lacks and those of
// next that prev lacks, when next is prev with at most limit elements
// replaced, removed or added in place; ok is false otherwise. An element
// that only moved (a removal that filled its place with the last element)
// is in neither.
func listChanges[T comparable](prev, next []T, limit int) (gone, came []T, ok bool) {
	if len(prev)-len(next) > limit || len(next)-len(prev) > limit {
		return nil, nil, false
	}
	n := min(len(prev), len(next))
	for i := range n {
		if prev[i] != next[i] {
			if len(gone) == limit {
				return nil, nil, false
			}
			gone, came = append(gone, prev[i]), append(came, next[i])
		}
	}
	gone, came = append(gone, prev[n:]...), append(came, next[n:]...)
	if len(gone) > limit || len(came) > limit {
		return nil, nil, false
	}
	if len(gone) > 0 && len(came) > 0 {
		left := make(map[T]int, len(gone))
		for _, x := range gone {
			left[x]++
		}
		moved := map[T]int{}
		came = slices.DeleteFunc(came, func(x T) bool {
			if left[x] > 0 {
				left[x]--
				moved[x]++
				return true
			}
			return false
		})
		gone = slices.DeleteFunc(gone, func(x T) bool {
			if moved[x] > 0 {
				moved[x]--
				return true
			}
			return false
		})
	}
	return gone, came, true
}

// splice returns a new list: list without the elements at the positions
// drop (ascending), with add[i] inserted before the element at position
// at[i] of list (ascending; len(list) appends). Unchanged runs are copied
// whole.
func splice[T any](list []T, drop []int, at []int, add []T) []T {
	out := make([]T, 0, len(list)-len(drop)+len(add))
	i, d, a := 0, 0, 0
	for {
		next := len(list)
		if d < len(drop) {
			next = min(next, drop[d])
		}
		if a < len(add) {
			next = min(next, at[a])
		}
		out = append(out, list[i:next]...)
		i = next
		for a < len(add) && at[a] == i {
			out = append(out, add[a])
			a++
		}
		if d < len(drop) && drop[d] == i {
			i, d = i+1, d+1
			continue
		}
		if i >= len(list) {
			return out
		}
	}
}

// spliceInPlace is splice on a list nobody else holds (the Translator's
// own orders, never a returned table's): it modifies list, growing it when
// the result is longer, and returns the result. Each run of elements
// between two changes moves once, by what was dropped and added before
// it, so a change in the middle of 10,000 moves the elements between its
// removal and its insertion instead of copying the whole list.
func spliceInPlace[T any](list []T, drop []int, at []int, add []T) []T {
	n := len(list)
	m := n - len(drop) + len(add)
	if m > n {
		list = slices.Grow(list, m-n)
	}
	list = list[:max(n, m)]
	// The runs of kept elements, each with its shift: the adds before it
	// (at <= its start) less the drops before it.
	type run struct{ from, to, shift int }
	var buf [8]run
	runs := buf[:0]
	i, d, a, shift := 0, 0, 0, 0
	for i < n {
		for a < len(add) && at[a] == i {
			shift, a = shift+1, a+1
		}
		if d < len(drop) && drop[d] == i {
			shift, d, i = shift-1, d+1, i+1
			continue
		}
		next := n
		if d < len(drop) {
			next = min(next, drop[d])
		}
		if a < len(add) {
			next = min(next, at[a])
		}
		if shift != 0 {
			runs = append(runs, run{i, next, shift})
		}
		i = next
	}
	// A run moving right can only land on runs to its right that also
	// move right, and one moving left only on runs to its left that also
	// move left: the first are moved right to left, the second left to
	// right, and the additions, whose places held elements still to move,
	// are written last.
	for k := len(runs) - 1; k >= 0; k-- {
		if r := runs[k]; r.shift > 0 {
			copy(list[r.from+r.shift:], list[r.from:r.to])
		}
	}
	for _, r := range runs {
		if r.shift < 0 {
			copy(list[r.from+r.shift:], list[r.from:r.to])
		}
	}
	d = 0
	for k, x := range add {
		for d < len(drop) && drop[d] < at[k] {
			d++
		}
		list[at[k]-d+k] = x
	}
	clear(list[m:]) // no stale references past the end
	return list[:m]
}

// positionsOf returns the positions of elems in list (sorted by compare),
// ascending, and false when one is not there.
func positionsOf[T comparable](list, elems []T, compare func(a, b T) int) ([]int, bool) {
	out := make([]int, 0, len(elems))
	for _, x := range elems {
		i, _ := slices.BinarySearchFunc(list, x, compare)
		for i < len(list) && list[i] != x && compare(list[i], x) == 0 {
			i++
		}
		if i == len(list) || list[i] != x {
			if i = slices.Index(list, x); i < 0 {
				return nil, false
			}
		}
		out = append(out, i)
	}
	slices.Sort(out)
	return out, true
}

// insertionPoints returns where each of add (sorted by compare) goes in
// list: before the first element not less than it.
func insertionPoints[T any](list, add []T, compare func(a, b T) int) []int {
	out := make([]int, len(add))
	for j, x := range add {
		out[j] = sort.Search(len(list), func(k int) bool { return compare(x, list[k]) <= 0 })
	}
	return out
}

// nameChange is what became of one Ingress name in a call: the entry it
// had (nil: none served) and the Ingress it has now (nil: none served),
// with its entry.
type nameChange struct {
	old *ingressEntry
	ing *networkingv1.Ingress
	new *ingressEntry
}

// keyChange is one key's claimants before and after a call.
type keyChange struct {
	before, after []*claimant
}

// translateChanged is the incremental path; ok is false when the call is
// the full path's (nothing was changed then).
func (t *Translator) translateChanged(s *Snapshot, o Options) (Table, bool) {
	in := &t.incr
	if !in.ok || !t.started || len(s.HeldIngresses) > 0 || !sameOptions(t.opts, o) || o.DefaultCertificate != in.defaultCert ||
		!slices.Equal(s.IngressClasses, in.classes) || !slices.Equal(s.Services, t.indexedServices) ||
		!slices.Equal(s.Secrets, t.indexedSecrets) {
		return Table{}, false
	}
	goneIngs, newIngs, ok := listChanges(in.ingresses, s.Ingresses, max(16, len(s.Ingresses)/16))
	if !ok {
		return Table{}, false
	}
	goneSlices, newSlices, ok := listChanges(t.indexedSlices, s.EndpointSlices, max(64, len(s.EndpointSlices)/16))
	if !ok {
		return Table{}, false
	}

	// What changed, checked before anything is touched: a call this path
	// cannot answer is the full path's, which must find the state as the
	// previous call left it.
	sel := newClassSelector(s.IngressClasses, o.ControllerName)
	changes := map[types.NamespacedName]*nameChange{}
	change := func(n types.NamespacedName) *nameChange {
		ch := changes[n]
		if ch == nil {
			ch = &nameChange{}
			changes[n] = ch
		}
		return ch
	}
	for _, ing := range goneIngs {
		if ing == nil {
			continue
		}
		if e := t.ingresses[ing]; e != nil {
			if ch := change(e.ref()); ch.old == nil {
				ch.old = e
			} else {
				return Table{}, false
			}
		}
	}
	for _, ing := range newIngs {
		if ing == nil || !sel.serves(ing) {
			continue
		}
		if t.ingresses[ing] != nil {
			return Table{}, false // listed twice
		}
		if ch := change(objectKey(ing.Namespace, ing.Name)); ch.ing == nil {
			ch.ing = ing
		} else {
			return Table{}, false
		}
	}
	for name, ch := range changes {
		before := t.servedCount(name)
		after := before - boolCount(ch.old != nil) + boolCount(ch.ing != nil)
		if before > 1 || after > 1 || before == 1 && ch.old == nil {
			return Table{}, false // duplicates: the full path's
		}
	}
	sliceServices := map[types.NamespacedName]bool{}
	for _, es := range goneSlices {
		if name, labelled := sliceService(es); labelled {
			if _, present := t.slicePresent[es]; !present {
				return Table{}, false
			}
			sliceServices[name] = true
		}
	}
	for _, es := range newSlices {
		if name, labelled := sliceService(es); labelled {
			if _, present := t.slicePresent[es]; present {
				return Table{}, false // listed twice
			}
			sliceServices[name] = true
		}
	}
	t.keyPairsNext = t.keyPairs // one map: the Secrets are those of the previous call
	gw := translateGateway(s, o, t.service, t.keyPair)
	if len(gw.routes) > 0 {
		t.keyPairsNext = nil
		return Table{}, false
	}
	var changedNames []types.NamespacedName
	for name, ch := range changes {
		changedNames = append(changedNames, name)
		if ch.ing != nil {
			ch.new = t.newEntry(ch.ing, t.names[name].newest)
		}
	}
	slices.SortFunc(changedNames, compareNames) // a deterministic order for what follows

	// The keys the changed Ingresses claim or claimed, before and after.
	var adds, dels []Problem
	keys := map[ruleKey]*keyChange{}
	var defaults *keyChange
	goneEntry := func(e *ingressEntry) bool { ch := changes[e.ref()]; return ch != nil && ch.old == e }
	touch := func(e *ingressEntry) {
		if e.def != nil && defaults == nil {
			defaults = &keyChange{before: t.defaults.all()}
		}
		for _, c := range e.rules {
			if key := c.key(); keys[key] == nil {
				keys[key] = &keyChange{before: t.claims[key].all()}
			}
		}
	}
	for _, name := range changedNames {
		ch := changes[name]
		if ch.old != nil {
			touch(ch.old)
			dels = append(dels, ch.old.problems...)
		}
		if ch.new != nil {
			touch(ch.new)
			adds = append(adds, ch.new.problems...)
		}
	}
	settle := func(k *keyChange, added []*claimant) {
		k.after = slices.DeleteFunc(slices.Clone(k.before), func(c *claimant) bool { return goneEntry(c.owner) })
		for _, c := range added {
			i, _ := slices.BinarySearchFunc(k.after, c, compareClaimants)
			k.after = slices.Insert(k.after, i, c)
		}
		dels = claimProblems(k.before, dels)
		adds = claimProblems(k.after, adds)
	}
	newClaims := map[ruleKey][]*claimant{}
	var newDefaults []*claimant
	for _, name := range changedNames {
		if e := changes[name].new; e != nil {
			if e.def != nil {
				newDefaults = append(newDefaults, e.def)
			}
			for _, c := range e.rules {
				newClaims[c.key()] = append(newClaims[c.key()], c)
			}
		}
	}
	var lostWin, wonNow []*claimant
	winner := func(l []*claimant) *claimant {
		if len(l) == 0 {
			return nil
		}
		return l[0]
	}
	settleWinner := func(k *keyChange) {
		if before, after := winner(k.before), winner(k.after); before != after {
			if before != nil {
				lostWin = append(lostWin, before)
			}
			if after != nil {
				wonNow = append(wonNow, after)
			}
		}
	}
	for key, k := range keys {
		settle(k, newClaims[key])
		settleWinner(k)
	}
	if defaults != nil {
		settle(defaults, newDefaults)
		settleWinner(defaults)
	}
	// Route IDs must stay unique (colliding ones are renamed by the full
	// path, which is astronomically rare).
	slices.SortFunc(lostWin, compareWinners)
	slices.SortFunc(wonNow, compareWinners)
	for i, c := range wonNow {
		if i > 0 && wonNow[i-1].rt.Eskip.Id == c.rt.Eskip.Id {
			return Table{}, false
		}
		j, found := slices.BinarySearchFunc(t.winners, c.rt.Eskip.Id, func(w *claimant, id string) int { return strings.Compare(w.rt.Eskip.Id, id) })
		if found && !slices.Contains(lostWin, t.winners[j]) {
			return Table{}, false
		}
	}
	dropWinners, ok := positionsOf(t.winners, lostWin, compareWinners)
	if !ok {
		return Table{}, false
	}
	var goneOrder, newOrder []*ingressEntry
	var goneNames, newNames []types.NamespacedName
	for _, name := range changedNames {
		ch := changes[name]
		if ch.old != nil {
			goneOrder = append(goneOrder, ch.old)
		}
		if ch.new != nil {
			newOrder = append(newOrder, ch.new)
		}
		switch {
		case ch.old != nil && ch.new == nil:
			goneNames = append(goneNames, name)
		case ch.old == nil && ch.new != nil:
			newNames = append(newNames, name)
		}
	}
	slices.SortFunc(goneOrder, compareEntries)
	slices.SortFunc(newOrder, compareEntries)
	dropOrder, ok := positionsOf(t.order, goneOrder, compareEntries)
	if !ok {
		return Table{}, false
	}
	dropNames, ok := positionsOf(t.last.Served, goneNames, compareNames)
	if !ok {
		return Table{}, false
	}

	// Committed from here on.
	t.gen++
	gen := t.gen
	in.calls++
	t.slicesNow, t.sliceScans = s.EndpointSlices, 0
	for _, es := range goneSlices {
		if name, labelled := sliceService(es); labelled {
			delete(t.slicePresent, es)
			slot := t.services[name]
			slot.slices--
			t.setSlot(name, slot)
		}
	}
	for _, es := range newSlices {
		if name, labelled := sliceService(es); labelled {
			t.slicePresent[es] = struct{}{}
			slot := t.services[name]
			slot.slices++
			t.services[name] = slot
		}
	}
	if len(goneSlices)+len(newSlices) > 0 {
		t.indexedSlices = overwrite(t.indexedSlices, s.EndpointSlices)
	}

	for _, name := range changedNames {
		ch := changes[name]
		if e := ch.old; e != nil {
			delete(t.ingresses, e.ing)
			if t.names[name].newest == e {
				t.setNewest(name, nil)
			}
			t.countServed(name, -1)
			e.inOrder = false
		}
		if e := ch.new; e != nil {
			t.ingresses[e.ing] = e
			t.setNewest(name, e)
			t.countServed(name, 1)
			e.seen, e.served, e.ordered, e.inOrder = gen, gen, gen, true
		}
	}
	for key, k := range keys {
		t.claims[key] = linked(k.after)
		if len(k.after) == 0 {
			delete(t.claims, key)
		}
	}
	if defaults != nil {
		t.defaults = linked(defaults.after)
	}

	// Routes: the winners that changed, spliced in.
	routes := t.last.Routes
	if len(lostWin)+len(wonNow) > 0 {
		at := insertionPoints(t.winners, wonNow, compareWinners)
		t.winners = spliceInPlace(t.winners, dropWinners, at, wonNow)
		added := make([]*Route, len(wonNow))
		for i, c := range wonNow {
			added[i] = c.newRoute()
		}
		routes = splice(t.last.Routes, dropWinners, at, added)
		for _, c := range lostWin {
			c.inRoutes = false
		}
		for _, c := range wonNow {
			c.inRoutes, c.won = true, gen
		}
	}
	if len(goneOrder)+len(newOrder) > 0 {
		t.order = spliceInPlace(t.order, dropOrder, insertionPoints(t.order, newOrder, compareEntries), newOrder)
	}
	served := t.last.Served
	if len(goneNames)+len(newNames) > 0 {
		served = splice(served, dropNames, insertionPoints(served, newNames, compareNames), newNames)
	}

	// Backends: those routes name now and did not, those they no longer
	// name, and those whose slices changed.
	backends, dels2, adds2 := t.updateBackends(lostWin, wonNow, sliceServices)
	dels, adds = append(dels, dels2...), append(adds, adds2...)

	// Certificates: made again from the Ingresses with spec.tls (few).
	var goneTLS, newTLS []*ingressEntry
	for _, e := range goneOrder {
		if len(e.ing.Spec.TLS) > 0 {
			goneTLS = append(goneTLS, e)
		}
	}
	for _, e := range newOrder {
		if len(e.ing.Spec.TLS) > 0 {
			newTLS = append(newTLS, e)
		}
	}
	if len(goneTLS)+len(newTLS) > 0 {
		drop, _ := positionsOf(in.tlsOrder, goneTLS, compareEntries)
		in.tlsOrder = spliceInPlace(in.tlsOrder, drop, insertionPoints(in.tlsOrder, newTLS, compareEntries), newTLS)
	}
	var certProblems []Problem
	certs := t.ingressCertificates(in.tlsOrder, nil, o, &certProblems)
	dels, adds = append(dels, in.certProblems...), append(adds, certProblems...)
	dels, adds = append(dels, in.gwProblems...), append(adds, gw.problems...)
	in.certProblems, in.gwProblems = certProblems, gw.problems
	problems := t.updateProblems(dels, adds)

	t.keyPairsNext = nil
	in.ingresses = overwrite(in.ingresses, s.Ingresses)
	t.slicesNow, t.sliceGroups = nil, nil
	t.last = Table{Routes: routes, Problems: problems, Served: served, Backends: backends}
	out := t.last
	out.GatewayClasses, out.Gateways, out.HTTPRoutes, out.GRPCRoutes = gw.classes, gw.gateways, gw.httpRoutes, gw.grpcRoutes
	out.Certificates = gw.certs
	if len(certs) > 0 {
		out.Certificates = append(certs, gw.certs...)
		slices.SortFunc(out.Certificates, compareCertificates)
	}
	return out, true
}

// overwrite makes dst a copy of src, which differs from it in a few
// places: those alone are written when the lengths are equal, because a
// bulk copy of 10,000 pointers while the GC marks runs the write barrier on
// each of them.
func overwrite[T comparable](dst, src []T) []T {
	if len(dst) != len(src) {
		return append(dst[:0], src...)
	}
	for i, x := range src {
		if dst[i] != x {
			dst[i] = x
		}
	}
	return dst
}

func boolCount(b bool) int {
	if b {
		return 1
	}
	return 0
}

// linked links claimants (in precedence order) into a claimList.
func linked(list []*claimant) claimList {
	var l claimList
	for _, c := range list {
		l.push(c)
	}
	return l
}

// updateBackends brings the backend list up to date with the routes that
// left (lost) and came (won), and resolves again the backends of the
// Services whose slices changed; it returns the list and the problems
// that went and came.
func (t *Translator) updateBackends(lost, won []*claimant, sliceServices map[types.NamespacedName]bool) (list []Backend, dels, adds []Problem) {
	gen := t.gen
	delta := map[BackendKey]int{}
	for _, c := range lost {
		if k := c.rt.Backend; !k.IsZero() {
			delta[k]--
		}
	}
	for _, c := range won {
		if k := c.rt.Backend; !k.IsZero() {
			delta[k]++
		}
	}
	var gone, came []*backendEntry
	var resolve []*backendEntry
	for k, d := range delta {
		if d == 0 {
			continue
		}
		be := t.backend(k)
		if be == nil {
			be = newBackendEntry(k)
		}
		before := be.refs
		be.refs += int32(d)
		switch {
		case before == 0 && be.refs > 0:
			came = append(came, be)
			resolve = append(resolve, be)
		case before > 0 && be.refs <= 0:
			gone = append(gone, be)
			dels = append(dels, be.problems...)
			be.refs = 0
		}
	}
	// Backends still named whose Service's slices changed.
	var again []*backendEntry
	for name := range sliceServices {
		i, _ := slices.BinarySearchFunc(t.backendOrder, name, func(be *backendEntry, n types.NamespacedName) int {
			return cmp.Or(cmp.Compare(be.key().Namespace, n.Namespace), cmp.Compare(be.key().Service, n.Name))
		})
		for ; i < len(t.backendOrder); i++ {
			be := t.backendOrder[i]
			if be.key().Namespace != name.Namespace || be.key().Service != name.Name {
				break
			}
			if be.refs > 0 {
				again = append(again, be)
			}
		}
	}
	for _, be := range resolve {
		t.resolveBackend(be)
		be.used = gen
		adds = append(adds, be.problems...)
	}
	for _, be := range again {
		dels = append(dels, be.problems...)
		t.resolveBackend(be)
		be.used = gen
		adds = append(adds, be.problems...)
	}
	list = t.last.Backends
	if len(gone)+len(came)+len(again) == 0 {
		return list, dels, adds
	}
	compare := func(a, b *backendEntry) int { return CompareBackendKeys(a.key(), b.key()) }
	slices.SortFunc(gone, compare)
	slices.SortFunc(came, compare)
	drop, _ := positionsOf(t.backendOrder, gone, compare)
	at := insertionPoints(t.backendOrder, came, compare)
	t.backendOrder = spliceInPlace(t.backendOrder, drop, at, came)
	values := make([]Backend, len(came))
	for i, be := range came {
		values[i] = be.backend
		be.inList = true
	}
	for _, be := range gone {
		be.inList = false
	}
	list = splice(list, drop, at, values)
	for _, be := range again {
		if i, found := slices.BinarySearchFunc(list, be.key(), func(b Backend, k BackendKey) int { return CompareBackendKeys(b.Key, k) }); found {
			list[i] = be.backend
		}
	}
	return list, dels, adds
}

// updateProblems applies what went and came to the counted contributions
// and returns the table's problems: the previous list when no problem
// appeared or went.
func (t *Translator) updateProblems(dels, adds []Problem) []Problem {
	in := &t.incr
	delta := map[Problem]int{}
	for _, p := range dels {
		delta[p]--
	}
	for _, p := range adds {
		delta[p]++
	}
	var gone, came []Problem
	for p, d := range delta {
		if d == 0 {
			continue
		}
		before := in.problems[p]
		after := before + d
		switch {
		case after <= 0:
			delete(in.problems, p)
		default:
			in.problems[p] = after
		}
		switch {
		case before > 0 && after <= 0:
			gone = append(gone, p)
		case before <= 0 && after > 0:
			came = append(came, p)
		}
	}
	if len(gone)+len(came) == 0 {
		return t.last.Problems
	}
	slices.SortFunc(gone, compareProblems)
	slices.SortFunc(came, compareProblems)
	drop, _ := positionsOf(t.last.Problems, gone, compareProblems)
	return splice(t.last.Problems, drop, insertionPoints(t.last.Problems, came, compareProblems), came)
}
