// Command crrelay is the connection-request and NAT-traversal relay
// appliance for TR-069 device management, and its command-line client.
//
//	crrelay serve [flags]          run the appliance
//	crrelay device put|get|list|delete ...
//	crrelay wake ID [--transport T] [--timeout D]
//	crrelay sim http|stun [flags]  run simulated CPEs
//	crrelay check xmpp --domain D  check the broker's DNS SRV records
//	crrelay xmpp-credentials       salt a password for --xmpp-acs-accounts
//	crrelay version
//
// This package only wires: protocol logic lives in the packages it calls.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries an exit status without being a failure message, e.g.
// a wake that ran but did not reach the CPE.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error, stderr io.Writer) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "crrelay:", err)
		return 2
	}
	fmt.Fprintln(stderr, "crrelay:", err)
	return 1
}

const usage = `usage: crrelay <command> [flags]

commands:
  serve                         run the appliance (crrelay serve --help for every setting)
  device put ID [flags]         create or replace a device
  device patch ID [flags]       change some fields of a device
  device get ID                 show a device and its live state
  device list [--limit N]       list devices
  device delete ID              forget a device
  wake ID [--transport T]       send a connection request; exit 0 only if delivered, sent or confirmed
        [--strategy S] [--wait confirmed]
  inform ID [--event E]         report the CPE's Inform (default "6 CONNECTION REQUEST"): confirms its wake
  campaign start [--devices IDS | --devices-file F | --filter F] [--rate N] [--concurrency N] [--watch]
                                wake many devices; status|watch|cancel ID; list
  sim http [flags]              run simulated HTTP CPEs (optionally registering them)
  sim stun [flags]              run simulated TR-111 STUN CPEs (optionally registering them)
  sim xmpp --domain D [flags]   run simulated Annex K XMPP CPEs (optionally registering them)
  check xmpp [--domain D]       do the domain's XMPP SRV records lead to this appliance? exit 0 if so
  xmpp-credentials < pwfile     print salted SCRAM credentials of a password (for --xmpp-acs-accounts)
  version                       print the version

Client commands take --api (env CRRELAY_API, default http://127.0.0.1:8547)
and --token (env CRRELAY_API_TOKEN, else read from <data-dir>/api-token).`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], os.Getenv, stdout, stderr)
	case "device":
		return deviceCmd(ctx, args[1:], stdout, stderr)
	case "wake":
		return wakeCmd(ctx, args[1:], stdout, stderr)
	case "campaign":
		return campaignCmd(ctx, args[1:], stdout, stderr)
	case "inform":
		return informCmd(ctx, args[1:], stdout, stderr)
	case "sim":
		return simCmd(ctx, args[1:], stdout, stderr)
	case "check":
		return checkCmd(ctx, args[1:], os.Getenv, stdout, stderr)
	case "xmpp-credentials":
		return xmppCredentialsCmd(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "crrelay", version)
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}
