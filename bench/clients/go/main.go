// Sequential cached gets with the Go client (clients/go), for bench/clients/run: prints the p50
// and p99 in microseconds. -knob picks grpc-go dial options to try (see BENCHMARKS.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/psst-dev/psst/clients/go/psst"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

func main() {
	socket := flag.String("socket", "", "the agent's socket")
	n := flag.Int("n", 5000, "sequential calls")
	ref := flag.String("ref", "local:bench/db-password", "the reference read")
	knob := flag.String("knob", "default", "default | windows | buffers | keepalive")
	flag.Parse()
	opts := []psst.Option{psst.WithSocket(*socket)}
	switch *knob {
	case "default":
	case "windows":
		// Fixed 1 MiB stream / 4 MiB connection windows: turns off grpc-go's BDP estimation
		// (and its pings) and the WINDOW_UPDATEs of a 64 KiB window.
		opts = append(opts, psst.WithDialOptions(
			grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(4<<20)))
	case "buffers":
		// One write buffer shared across the connection's writes, smaller read buffer.
		opts = append(opts, psst.WithDialOptions(
			grpc.WithSharedWriteBuffer(true), grpc.WithReadBufferSize(4096), grpc.WithWriteBufferSize(4096)))
	case "keepalive":
		opts = append(opts, psst.WithDialOptions(grpc.WithKeepaliveParams(
			keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second})))
	default:
		fmt.Fprintln(os.Stderr, "unknown knob", *knob)
		os.Exit(2)
	}
	client, err := psst.New(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := context.Background()
	samples := make([]float64, 0, *n)
	for i := 0; i < *n/10+*n; i++ {
		started := time.Now()
		if _, err := client.Get(ctx, *ref); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if i >= *n/10 {
			samples = append(samples, float64(time.Since(started).Nanoseconds())/1000)
		}
	}
	sort.Float64s(samples)
	fmt.Printf("%.1f %.1f\n", samples[len(samples)/2], samples[len(samples)*99/100])
}
