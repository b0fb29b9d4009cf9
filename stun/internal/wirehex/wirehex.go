// Package wirehex turns packet diagrams written for people into bytes, so
// the STUN tests can state real wire bytes row by row, independently of
// the codec under test.
package wirehex

import (
	"encoding/hex"
	"strings"
)

// Bytes returns the bytes of rows: each row is hex bytes separated by
// spaces; anything after "|" is a comment; a word in double quotes is
// taken as ASCII. Bad hex panics: rows are test constants.
func Bytes(rows ...string) []byte {
	var b []byte
	for _, row := range rows {
		row, _, _ = strings.Cut(row, "|")
		for _, f := range strings.Fields(row) {
			if strings.HasPrefix(f, `"`) {
				b = append(b, strings.Trim(f, `"`)...)
				continue
			}
			v, err := hex.DecodeString(f)
			if err != nil {
				panic("wirehex: bad hex " + f)
			}
			b = append(b, v...)
		}
	}
	return b
}
