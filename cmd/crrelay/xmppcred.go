package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/crrelay/crrelay/internal/scramcred"
)

// xmppCredentialsCmd reads a password on standard input and prints its
// salted SCRAM credentials, for --xmpp-acs-accounts (or a device's
// xmpp_password): the appliance then never holds the password itself.
func xmppCredentialsCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xmpp-credentials", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: crrelay xmpp-credentials < password-file\n\nReads one password (the first line of standard input) and prints its salted\nSCRAM-SHA-1/SCRAM-SHA-256 credentials, for --xmpp-acs-accounts jid=<credentials>.")
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: xmpp-credentials takes no arguments (the password comes on standard input, never on the command line)", errUsage)
	}
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "password (echoed; pipe it in to avoid that): ")
		}
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("reading the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return fmt.Errorf("%w: no password on standard input", errUsage)
	}
	c, err := scramcred.Derive(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, c.String())
	return nil
}
