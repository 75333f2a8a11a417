package tablestore

import (
	"hash/crc32"
	"os"
	"unsafe"

	"github.com/zalando/skipper/eskip"

	"github.com/bulkhead-router/bulkhead/routing"
)

// fileCache is what a Store keeps from one write to the next instead of
// the JSON of every route and backend (encodeCache): where each one's JSON
// is in the file it wrote. The next write reads that file back, checks
// that it is byte for byte what was written (size and CRC-32C), and takes
// the JSON of the routes and backends it still has from it. At 10,000
// routes the JSON kept in memory was 8.7 MB of live heap, every second of
// it twice that in the process's resident memory; reading the file back
// costs a few milliseconds once a write (page cache), and a file that is
// not what was written (replaced, truncated, damaged) only means every
// route is encoded again, as on the first write.
type fileCache struct {
	size     int
	crc      uint32
	routes   map[*eskip.Route]span
	backends map[backendRef]span
}

// span is a range of the written file.
type span struct{ at, n uint32 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// load reads the file back and returns it as an encodeCache whose routes
// and backends are looked up in it; nil when there is nothing to reuse or
// the file is not what was written.
func (c *fileCache) load(path string) *encodeCache {
	if c == nil {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil || len(data) != c.size || crc32.Checksum(data, castagnoli) != c.crc {
		return nil
	}
	return &encodeCache{file: c, data: data}
}

// newFileCache records where the JSON of t's routes and backends is in the
// file made of parts: encodeCached's, which hold the very slices written
// keeps, the routes' in t's order and then the backends'. Nil when they
// are not found so.
func newFileCache(t routing.Table, parts [][]byte, written *encodeCache) *fileCache {
	c := &fileCache{
		routes:   make(map[*eskip.Route]span, len(t.Routes)),
		backends: make(map[backendRef]span, len(t.Backends)),
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
	for _, r := range t.Routes {
		s, ok := find(written.routes[r.Eskip])
		if !ok {
			return nil
		}
		c.routes[r.Eskip] = s
	}
	for i := range t.Backends {
		ref := refOf(&t.Backends[i])
		s, ok := find(written.backends[ref])
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
	for _, p := range parts {
		c.crc = crc32.Update(c.crc, castagnoli, p)
	}
	return c
}
