package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

type config struct {
	listen, control, tlsListen string
	tlsCert, tlsKey            string
	pod                        string
	shutdownDelay              time.Duration
	shutdownTimeout            time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("grpc-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.listen, "listen", ":8080", "address gRPC is served on over h2c")
	fs.StringVar(&cfg.control, "control", "", "address of the HTTP control endpoint (optional)")
	fs.StringVar(&cfg.tlsListen, "tls-listen", "", "address gRPC is served on over TLS (optional; needs -tls-cert and -tls-key)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate chain for -tls-listen")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key for -tls-listen")
	fs.StringVar(&cfg.pod, "pod", firstEnv("POD_NAME", "HOSTNAME"), "pod name sent in metadata (default $POD_NAME, else $HOSTNAME)")
	fs.DurationVar(&cfg.shutdownDelay, "shutdown-delay", 0, "how long the pod keeps serving after SIGTERM before GracefulStop")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long calls in flight may take to finish after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case cfg.listen == "":
		return cfg, errors.New("-listen is required")
	case cfg.tlsListen != "" && (cfg.tlsCert == "" || cfg.tlsKey == ""):
		return cfg, errors.New("-tls-listen needs -tls-cert and -tls-key")
	case cfg.shutdownTimeout <= 0 || cfg.shutdownDelay < 0:
		return cfg, errors.New("-shutdown-timeout must be positive and -shutdown-delay not negative")
	}
	return cfg, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "grpc-echo:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("pod", cfg.pod)
	log.Info("starting", "pid", os.Getpid())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	ls, err := openListeners(cfg)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer ls.closeAll()
	return serve(ctx, ls, cfg, log)
}

// openListeners opens every listener of cfg (none on error) and loads the
// TLS key pair.
func openListeners(cfg config) (ls listeners, err error) {
	defer func() {
		if err != nil {
			ls.closeAll()
		}
	}()
	if ls.h2c, err = net.Listen("tcp", cfg.listen); err != nil {
		return ls, err
	}
	if cfg.tlsListen != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return ls, fmt.Errorf("loading the TLS key pair: %w", err)
		}
		ls.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if ls.tls, err = net.Listen("tcp", cfg.tlsListen); err != nil {
			return ls, err
		}
	}
	if cfg.control != "" {
		if ls.control, err = net.Listen("tcp", cfg.control); err != nil {
			return ls, err
		}
	}
	return ls, nil
}

// listeners are opened before anything serves, so that whoever sees the
// control endpoint answer knows the gRPC ports accept connections too.
type listeners struct {
	h2c, tls, control net.Listener
	tlsConfig         *tls.Config
}

func (ls *listeners) closeAll() {
	for _, l := range []net.Listener{ls.h2c, ls.tls, ls.control} {
		if l != nil {
			l.Close()
		}
	}
}

// serve runs the pod until ctx ends, then shuts down gracefully; it
// returns the exit code.
func serve(ctx context.Context, ls listeners, cfg config, log *slog.Logger) int {
	pod := newPod(cfg.pod, log)
	servers := []*grpc.Server{pod.newServer()}
	errs := make(chan error, 3)
	go func() { errs <- servers[0].Serve(ls.h2c) }()
	log.Info("listening", "addr", ls.h2c.Addr().String(), "protocol", "h2c")
	if ls.tls != nil {
		s := pod.newServer(grpc.Creds(credentials.NewTLS(ls.tlsConfig)))
		servers = append(servers, s)
		go func() { errs <- s.Serve(ls.tls) }()
		log.Info("listening", "addr", ls.tls.Addr().String(), "protocol", "h2")
	}
	var control *http.Server
	if ls.control != nil {
		control = &http.Server{Handler: pod.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errs <- control.Serve(ls.control) }()
		log.Info("control listening", "addr", ls.control.Addr().String())
	}

	select {
	case err := <-errs:
		log.Error("server failed", "err", err)
		for _, s := range servers {
			s.Stop()
		}
		return 1
	case <-ctx.Done():
	}
	// What a well-behaved gRPC service does: health first, so that
	// health-checking clients and probes move away, then GOAWAY.
	pod.health.Shutdown()
	if cfg.shutdownDelay > 0 {
		log.Info("termination signal received, serving on", "delay", cfg.shutdownDelay.String())
		select {
		case <-time.After(cfg.shutdownDelay):
		case err := <-errs:
			log.Error("server failed", "err", err)
		}
	}
	log.Info("termination signal received, shutting down", "grace", cfg.shutdownTimeout.String())
	done := make(chan struct{})
	go func() {
		for _, s := range servers {
			s.GracefulStop()
		}
		close(done)
	}()
	code := 0
	select {
	case <-done:
		log.Info("calls in flight finished")
	case <-time.After(cfg.shutdownTimeout):
		log.Warn("grace period expired, cutting the calls left")
		for _, s := range servers {
			s.Stop()
		}
		<-done
		code = 1
	}
	if control != nil {
		control.Close()
	}
	log.Info("exiting", "code", code)
	return code
}
