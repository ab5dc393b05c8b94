// Command partnerhub runs the partnerhub integration hub: serve the API,
// the webhook ingest and the worker; migrate the database; print the
// version.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/partnerhub/partnerhub/config"
	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd(os.Getenv, os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "partnerhub:", err)
		os.Exit(1)
	}
}

func newRootCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "partnerhub",
		Short:         "Self-hosted, webhook-centric integration hub for partner and affiliate programs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&cfgPath, "config", "", "optional YAML configuration file (environment variables override it)")
	load := func() (*config.Config, *slog.Logger, error) {
		cfg, err := config.Load(cfgPath, getenv)
		if err != nil {
			return nil, nil, err
		}
		log := newLogger(stderr, cfg.LogLevel)
		slog.SetDefault(log)
		return cfg, log, nil
	}

	var roles string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP server, webhook ingest, worker and scheduler",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load()
			if err != nil {
				return err
			}
			if roles != "" {
				if cfg, err = withRoles(cfgPath, getenv, roles); err != nil {
					return err
				}
			}
			app, err := NewApp(cmd.Context(), cfg, log, stdout, Options{})
			if err != nil {
				return err
			}
			defer app.Close()
			return app.Run(cmd.Context())
		},
	}
	serve.Flags().StringVar(&roles, "roles", "", "comma-separated roles to run: api, ingest, worker (default all; overrides PARTNERHUB_ROLES)")

	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Apply database migrations and exit",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load()
			if err != nil {
				return err
			}
			secretKey := cfg.SecretKey
			if secretKey == "" {
				if secretKey, err = config.LoadOrCreateSecretKey(cfg.DataDir); err != nil {
					return err
				}
			}
			ciph, err := hub.NewAESCipher(secretKey)
			if err != nil {
				return err
			}
			db, err := store.Open(cmd.Context(), store.Config{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Cipher: ciph})
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.Migrate(cmd.Context()); err != nil {
				return err
			}
			log.Info("database migrated", "dialect", db.Dialect())
			return nil
		},
	}
	ver := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(stdout, "partnerhub", version)
		},
	}
	root.AddCommand(serve, migrate, ver, newListenCmd(stdout))
	root.AddCommand(newDeliveriesCmd(getenv, stdout))
	root.AddCommand(newEndpointsCmd(getenv, stdout))
	root.AddCommand(newEventsCmd(getenv, stdout))
	sources, sourcesClient := newSourcesCmd(getenv, stdout)
	sources.AddCommand(newSourcesConnectCmd(sourcesClient), newSourcesBackfillCmd(sourcesClient))
	root.AddCommand(newTriggerCmd(getenv, stdout))
	root.AddCommand(newBenchCmd(getenv, stdout, stderr))
	root.AddCommand(sources, newPartnersCmd(getenv, stdout), newKeysCmd(getenv, stdout), newReportsCmd(getenv, stdout),
		newInboundCmd(getenv, stdout))
	return root
}

// withRoles reloads the configuration with PARTNERHUB_ROLES overridden by
// the --roles flag, so it is validated like the variable.
func withRoles(path string, getenv func(string) string, roles string) (*config.Config, error) {
	return config.Load(path, func(k string) string {
		if k == "PARTNERHUB_ROLES" {
			return roles
		}
		return getenv(k)
	})
}

// newLogger returns the JSON logger of the process; lines logged with a
// request's context carry its request_id.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return withRequestID(slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})))
}
