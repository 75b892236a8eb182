// The Go peer of benches/latency.rs scenario 1: with GOMAXPROCS=1, one
// goroutine spins in a call-free loop while the main goroutine sleeps 1 ms
// in a loop and records how much each sleep overshoots. Go 1.14+ preempts
// the spinner asynchronously (sysmon + SIGURG), like urgent does.
//
// Built and run by `cargo bench --bench latency` when `go` is on PATH:
//
//	GOMAXPROCS=1 go run benches/go/sleeper.go -secs 3
//
// Prints one line of percentiles and one line with every sample, in µs.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

var stop int32
var sink uint64

func spin() {
	x := uint64(0x9E3779B97F4A7C15)
	var i uint64
	for atomic.LoadInt32(&stop) == 0 {
		x = (x*6364136223846793005 + i) ^ (x >> 29)
		i++
	}
	atomic.StoreUint64(&sink, x)
}

func main() {
	secs := flag.Float64("secs", 3, "seconds to run")
	flag.Parse()
	window := time.Duration(*secs * float64(time.Second))

	done := make(chan struct{})
	go func() { spin(); close(done) }()
	// Let the spinner start (with one P it runs once main blocks).
	time.Sleep(time.Millisecond)

	var samples []int64
	start := time.Now()
	for time.Since(start) < window {
		t := time.Now()
		time.Sleep(time.Millisecond)
		samples = append(samples, int64(time.Since(t)-time.Millisecond)/1000)
	}
	atomic.StoreInt32(&stop, 1)
	<-done

	sorted := append([]int64(nil), samples...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	pct := func(q float64) int64 {
		if len(sorted) == 0 {
			return 0
		}
		return sorted[int(q*float64(len(sorted)-1)+0.5)]
	}
	fmt.Printf("go=%s gomaxprocs=%d n=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
		runtime.Version(), runtime.GOMAXPROCS(0), len(sorted), pct(0.5), pct(0.99), pct(0.999), pct(1))
	var b strings.Builder
	b.WriteString("samples_us:")
	for _, s := range samples {
		fmt.Fprintf(&b, " %d", s)
	}
	fmt.Println(b.String())
	os.Exit(0)
}
