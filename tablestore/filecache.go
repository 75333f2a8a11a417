package tablestore

import (
	"hash/maphash"
	"io"
	"syscall"
	"unsafe"

	"github.com/zalando/skipper/eskip"

	"github.com/bulkhead-router/bulkhead/routing"
)

// fileCache is what a Store keeps from one write to the next instead of
// the JSON of every route and backend (encodeCache): where each one's JSON
// is in the file it wrote. The next write reads that file back, checks
// that it is byte for byte what was written (size and a hash), and takes
// the JSON of the routes and backends it still has from it. At 10,000
// routes the JSON kept in memory was 8.7 MB of live heap, every second of
// it twice that in the process's resident memory; reading the file back
// costs a few milliseconds once a write (page cache), and a file that is
// not what was written (replaced, truncated, damaged) only means every
// route is encoded again, as on the first write.
type fileCache struct {
	size     int
	sum      uint64 // maphash of the file, with fileSeed
	routes   map[*eskip.Route]span
	backends map[backendRef]span
}

// span is a range of the written file.
type span struct{ at, n uint32 }

// fileSeed seeds the hash that tells the file read back from the one
// written: the process's own, since the check is against accidents, not
// adversaries (anyone who can write the file can write any snapshot).
// Hashing the 8 MB of 10,000 routes costs about as much as reading them
// back (2 ms on a busy 2-core machine; CRC-32C cost the same).
var fileSeed = maphash.MakeSeed()

// load reads the file back and returns it as an encodeCache whose routes
// and backends are looked up in it; nil when there is nothing to reuse or
// the file is not what was written. The file is read into memory mapped
// for the write, outside the Go heap, which release unmaps: the caller
// must keep nothing of the cache, or of what it handed out, after calling
// it. On the heap, the 8 to 15 MB of a table of 10,000 routes made the
// collector run once or twice more for every write and, when a collection
// marked them live, raised the heap's goal by as much for the next cycle.
func (c *fileCache) load(path string) (known *encodeCache, release func()) {
	release = func() {}
	if c == nil || c.size == 0 {
		return nil, release
	}
	// Only a regular file of the size written is read (what else is there
	// now, a FIFO or a file of gigabytes, is simply not what was written).
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, release
	}
	defer f.Close()
	if fi.Size() != int64(c.size) {
		return nil, release
	}
	data, err := syscall.Mmap(-1, 0, c.size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, release
	}
	unmap := func() { _ = syscall.Munmap(data) }
	if _, err := io.ReadFull(f, data); err != nil || maphash.Bytes(fileSeed, data) != c.sum {
		unmap()
		return nil, release
	}
	return &encodeCache{file: c, data: data, spansOnly: true}, unmap
}

// newFileCache records where the JSON of t's routes and backends is in the
// file made of parts: encodeCached's, which hold the very slices of
// written's routeFrags and backendFrags, the routes' in t's order and then
// the backends'. Nil when they are not found so. It reuses the maps of
// prev, which it replaces.
func newFileCache(t routing.Table, parts [][]byte, written *encodeCache, prev *fileCache) *fileCache {
	c := &fileCache{}
	if prev != nil {
		c.routes, c.backends = prev.routes, prev.backends
		clear(c.routes)
		clear(c.backends)
	} else {
		c.routes = make(map[*eskip.Route]span, len(t.Routes))
		c.backends = make(map[backendRef]span, len(t.Backends))
	}
	k, at := 0, 0 // the next part and where it starts
	find := func(frag []byte) (span, bool) {
		for ; k < len(parts); k++ {
			p := parts[k]
			at += len(p)
			if len(p) > 0 && unsafe.SliceData(p) == unsafe.SliceData(frag) {
				k++
				return span{at: uint32(at - len(p)), n: uint32(len(p))}, true
			}
		}
		return span{}, false
	}
	if len(written.routeFrags) != len(t.Routes) || len(written.backendFrags) != len(t.Backends) {
		return nil
	}
	for i, r := range t.Routes {
		s, ok := find(written.routeFrags[i])
		if !ok {
			return nil
		}
		c.routes[r.Eskip] = s
	}
	for i := range t.Backends {
		ref := refOf(&t.Backends[i])
		s, ok := find(written.backendFrags[i])
		if !ok {
			return nil
		}
		c.backends[ref] = s
	}
	for _, p := range parts[k:] {
		at += len(p)
	}
	if at > maxFileBytes {
		return nil
	}
	c.size = at
	var h maphash.Hash
	h.SetSeed(fileSeed)
	for _, p := range parts {
		_, _ = h.Write(p)
	}
	c.sum = h.Sum64()
	return c
}
