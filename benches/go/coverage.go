// The Go peer of benches/coverage.rs: with GOMAXPROCS=1, one goroutine runs a
// real CPU workload (sorting, maps, fmt, compress/flate, encoding/json,
// regexp, math, crypto/sha256, ...) in rounds for a fixed time while the main
// goroutine sleeps 1 ms in a loop and records how much each sleep overshoots.
// Go 1.14+ preempts the worker asynchronously (sysmon + SIGURG) wherever it is
// at an async safe point, which includes most of its standard library.
//
// The inputs are generated in-process with the same generator and shapes as
// the Rust side (xorshift64* seeded per workload), so no download is needed.
//
// Built and run by `cargo bench --bench coverage` when `go` is on PATH, one
// process per workload:
//
//	GOMAXPROCS=1 go run benches/go/coverage.go -w sort_unstable -secs 1
//	go run benches/go/coverage.go -list
//
// Prints one line: workload=NAME go=VERSION n=SLEEPS rounds=R p50_us= p99_us= max_us=
// or `unsupported=NAME` when the workload has no standard-library equivalent
// in Go (BTreeMap, u128 division).
package main

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// rng is xorshift64*, the generator benches/coverage.rs uses.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	*r = rng(x)
	return x * 0x2545F4914F6CDD1D
}

var words = []string{
	"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
	"india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
	"quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
	"yankee", "zulu", "running", "jumping", "singing", "thinking", "café", "naïve",
	"über", "façade", "jalapeño", "smörgåsbord", "日本語", "Ωmega", "ÉCOLE", "Straße",
}

// text is about n bytes of words, 12 to a line.
func text(r *rng, n int) string {
	var b strings.Builder
	i := 0
	for b.Len() < n {
		b.WriteString(words[r.next()%uint64(len(words))])
		i++
		if i%12 == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// jsonDoc is an array of n records.
func jsonDoc(r *rng, n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		w1 := words[r.next()%uint64(len(words))]
		w2 := words[r.next()%uint64(len(words))]
		score := float64(r.next()%1000000) / 1000.0
		fmt.Fprintf(&b, `{"id":%d,"name":"%s %s","score":%g,"tags":["%s","%s"],"active":%t,"nested":{"x":%d,"y":[1,2,3]}}`,
			i, w1, w2, score, w2, w1, r.next()%2 == 0, r.next()%10000)
	}
	b.WriteByte(']')
	return b.String()
}

var sink uint64

// workloads: each returns a round function (one unit of work).
var workloads = map[string]func(r *rng) func() uint64{
	"arith": func(r *rng) func() uint64 {
		return func() uint64 {
			x := uint64(0x9E3779B97F4A7C15)
			for i := uint64(0); i < 20_000_000; i++ {
				x = (x*6364136223846793005 + i) ^ (x >> 29)
			}
			return x
		}
	},
	"sort_unstable": func(r *rng) func() uint64 {
		src := make([]uint64, 1<<20)
		for i := range src {
			src[i] = r.next()
		}
		buf := make([]uint64, len(src))
		return func() uint64 {
			copy(buf, src)
			sort.Slice(buf, func(i, j int) bool { return buf[i] < buf[j] })
			return buf[len(buf)/2]
		}
	},
	"sort_stable": func(r *rng) func() uint64 {
		src := make([]uint64, 1<<20)
		for i := range src {
			src[i] = r.next()
		}
		buf := make([]uint64, len(src))
		return func() uint64 {
			copy(buf, src)
			sort.SliceStable(buf, func(i, j int) bool { return buf[i] < buf[j] })
			return buf[len(buf)/2]
		}
	},
	"sort_by_strings": func(r *rng) func() uint64 {
		src := make([]string, 200_000)
		for i := range src {
			src[i] = words[r.next()%uint64(len(words))] + strconv.FormatUint(r.next()%1_000_000, 10)
		}
		buf := make([]string, len(src))
		return func() uint64 {
			copy(buf, src)
			sort.Slice(buf, func(i, j int) bool { return buf[i] < buf[j] })
			return uint64(len(buf[len(buf)/2]))
		}
	},
	"hashmap_insert": func(r *rng) func() uint64 {
		keys := make([]uint64, 200_000)
		for i := range keys {
			keys[i] = r.next()
		}
		return func() uint64 {
			m := make(map[uint64]uint64)
			for i, k := range keys {
				m[k] = uint64(i)
			}
			return uint64(len(m))
		}
	},
	"format": func(r *rng) func() uint64 {
		var b bytes.Buffer
		return func() uint64 {
			b.Reset()
			for i := 0; i < 100_000; i++ {
				fmt.Fprintf(&b, "{\"i\":%d,\"f\":%.3f,\"h\":\"%x\"}\n", i, float64(i)*1.5, i*2654435761)
			}
			return uint64(b.Len())
		}
	},
	"instant_elapsed": func(r *rng) func() uint64 {
		return func() uint64 {
			t := time.Now()
			var s uint64
			for i := 0; i < 1_000_000; i++ {
				s += uint64(time.Since(t))
			}
			return s
		}
	},
	"flate2_compress": func(r *rng) func() uint64 {
		src := []byte(text(r, 1<<20))
		var out bytes.Buffer
		return func() uint64 {
			out.Reset()
			w, _ := flate.NewWriter(&out, flate.DefaultCompression)
			w.Write(src)
			w.Close()
			return uint64(out.Len())
		}
	},
	"serde_json_parse": func(r *rng) func() uint64 {
		doc := []byte(jsonDoc(r, 8000))
		return func() uint64 {
			var v interface{}
			if err := json.Unmarshal(doc, &v); err != nil {
				panic(err)
			}
			return uint64(len(v.([]interface{})))
		}
	},
	"regex_search": func(r *rng) func() uint64 {
		t := []byte(text(r, 1<<20))
		re := regexp.MustCompile(`[a-z]+ing [a-z]+`)
		return func() uint64 {
			return uint64(len(re.FindAllIndex(t, -1)))
		}
	},
	"libm_f64": func(r *rng) func() uint64 {
		xs := make([]float64, 1<<20)
		for i := range xs {
			xs[i] = float64(r.next()%1_000_000) / 1000.0
		}
		return func() uint64 {
			s := 0.0
			for _, x := range xs {
				s += math.Sin(x) + math.Exp(-x/100) + math.Log(1+x)
			}
			return math.Float64bits(s)
		}
	},
	"vec_clone": func(r *rng) func() uint64 {
		src := make([]byte, 16<<20)
		for i := range src {
			src[i] = byte(r.next())
		}
		return func() uint64 {
			c := append([]byte(nil), src...)
			return uint64(c[len(c)/2])
		}
	},
	"chars_rev": func(r *rng) func() uint64 {
		t := text(r, 1<<20)
		return func() uint64 {
			rs := []rune(t)
			for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
				rs[i], rs[j] = rs[j], rs[i]
			}
			return uint64(len(string(rs)))
		}
	},
	"sha256": func(r *rng) func() uint64 {
		src := make([]byte, 1<<20)
		for i := range src {
			src[i] = byte(r.next())
		}
		return func() uint64 {
			h := sha256.Sum256(src)
			return uint64(h[0])
		}
	},
	"f64_parse": func(r *rng) func() uint64 {
		strs := make([]string, 200_000)
		for i := range strs {
			strs[i] = strconv.FormatFloat(float64(r.next()%1_000_000_000)/997.0, 'g', -1, 64)
		}
		return func() uint64 {
			s := 0.0
			for _, x := range strs {
				f, _ := strconv.ParseFloat(x, 64)
				s += f
			}
			return math.Float64bits(s)
		}
	},
	"to_lowercase": func(r *rng) func() uint64 {
		t := strings.ToUpper(text(r, 1<<20))
		return func() uint64 {
			return uint64(len(strings.ToLower(t)))
		}
	},
	"str_matches": func(r *rng) func() uint64 {
		t := text(r, 1<<20)
		return func() uint64 {
			return uint64(strings.Count(t, "ing zulu"))
		}
	},
}

// No standard-library equivalent: reported as unsupported.
var unsupported = map[string]bool{"btreemap_insert": true, "u128_div": true}

var stop int32

func main() {
	w := flag.String("w", "", "workload to run")
	secs := flag.Float64("secs", 1, "seconds to run the workload")
	list := flag.Bool("list", false, "list the workloads")
	flag.Parse()
	if *list {
		names := make([]string, 0, len(workloads))
		for n := range workloads {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Println(strings.Join(names, " "))
		return
	}
	if unsupported[*w] {
		fmt.Printf("unsupported=%s\n", *w)
		return
	}
	mk, ok := workloads[*w]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown workload %q (try -list)\n", *w)
		os.Exit(2)
	}
	seed := rng(0x243F6A8885A308D3)
	for _, c := range *w {
		seed = rng((uint64(seed) ^ uint64(c)) * 0x100000001B3)
	}
	if seed == 0 {
		seed = 1
	}
	round := mk(&seed)
	round() // warm up (and fault in) outside the window
	window := time.Duration(*secs * float64(time.Second))

	done := make(chan uint64)
	go func() {
		var s, rounds uint64
		start := time.Now()
		for time.Since(start) < window {
			s ^= round()
			rounds++
		}
		atomic.StoreUint64(&sink, s)
		atomic.StoreInt32(&stop, 1)
		done <- rounds
	}()

	var samples []int64
	for atomic.LoadInt32(&stop) == 0 {
		t := time.Now()
		time.Sleep(time.Millisecond)
		samples = append(samples, int64(time.Since(t)-time.Millisecond)/1000)
	}
	rounds := <-done

	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	pct := func(q float64) int64 {
		if len(samples) == 0 {
			return 0
		}
		return samples[int(q*float64(len(samples)-1)+0.5)]
	}
	fmt.Printf("workload=%s go=%s n=%d rounds=%d p50_us=%d p99_us=%d max_us=%d\n",
		*w, runtime.Version(), len(samples), rounds, pct(0.5), pct(0.99), pct(1))
}
