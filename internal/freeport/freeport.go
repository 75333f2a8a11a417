package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{} // never hand out one port twice in a process
)

// Get returns n distinct ports that are free on 127.0.0.1 now.
func Get(n int) ([]int, error) {
	high := ephemeralLow() - 1
	mu.Lock()
	defer mu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free port found in %d-%d", lowest, high)
		}
		p := lowest + rand.IntN(high-lowest+1)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralLow is the start of the kernel's ephemeral port range.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > lowest+1000 {
				return v
			}
		}
	}
	return 32768
}
