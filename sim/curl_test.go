package sim

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestCurlInterop answers the simulator's challenges with curl's Digest and
// Basic code, which was not written here.
func TestCurlInterop(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	tests := []struct {
		name string
		cfg  HTTPCPEConfig
		auth []string
	}{
		{"digest-md5", HTTPCPEConfig{Mode: ModeDigestMD5}, []string{"--digest"}},
		{"digest-sha256", HTTPCPEConfig{Mode: ModeDigestSHA256}, []string{"--digest"}},
		{"digest-md5-sess", HTTPCPEConfig{Mode: ModeDigestMD5Sess}, []string{"--digest"}},
		{"digest-sha256-sess", HTTPCPEConfig{Mode: ModeDigestSHA256Sess}, []string{"--digest"}},
		{"digest-md5-noqop", HTTPCPEConfig{Mode: ModeDigestMD5NoQop}, []string{"--digest"}},
		{"digest-md5 close after 401", HTTPCPEConfig{Mode: ModeDigestMD5, CloseAfter401: true}, []string{"--digest"}},
		{"digest-md5 nonce per connection", HTTPCPEConfig{Mode: ModeDigestMD5, NoncePerConnection: true}, []string{"--digest"}},
		{"digest-md5 status 200", HTTPCPEConfig{Mode: ModeDigestMD5, SuccessStatus: 200}, []string{"--digest"}},
		{"basic", HTTPCPEConfig{Mode: ModeBasic}, []string{"--basic"}},
		{"none", HTTPCPEConfig{Mode: ModeNone}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, addr := oneCPE(t, tc.cfg, nil)
			// A bound on a hung curl, not a wait.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := []string{"-s", "-o", "/dev/null", "-w", "%{http_code}"}
			if tc.auth != nil {
				args = append(args, tc.auth...)
				args = append(args, "-u", "cr-user:cr-pass")
			}
			args = append(args, "http://"+addr+path1)
			out, err := exec.CommandContext(ctx, curl, args...).Output()
			if err != nil {
				t.Fatalf("curl: %v", err)
			}
			want := "204"
			if tc.cfg.SuccessStatus == 200 {
				want = "200"
			}
			if string(out) != want {
				t.Errorf("curl got %s, want %s; counters %+v", out, want, c.Counters())
			}
			if got := c.Counters(); got.Accepted != 1 || got.Rejected != 0 || got.Malformed != 0 {
				t.Errorf("counters %+v", got)
			}
		})
	}
}
