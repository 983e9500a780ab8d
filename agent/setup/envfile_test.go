package setup

import (
	"maps"
	"testing"
)

// TestParseEnvFile reads systemd's EnvironmentFile= format as systemd.exec(5)
// describes it.
func TestParseEnvFile(t *testing.T) {
	in := "# comment\n; also a comment\n\nOFFLOAD_WATCH=/srv/www/static\n  AWS_REGION = eu-west-1\n" +
		"OFFLOAD_BUCKET=\"my bucket\"\nOFFLOAD_TABLE='t'\nLONG=a\\\nb\nEMPTY=\n"
	got, err := ParseEnvFile([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"OFFLOAD_WATCH": "/srv/www/static", "AWS_REGION": "eu-west-1", "OFFLOAD_BUCKET": "my bucket",
		"OFFLOAD_TABLE": "t", "LONG": "ab", "EMPTY": ""}
	if !maps.Equal(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
	if _, err := ParseEnvFile([]byte("not a setting\n")); err == nil {
		t.Error("a line without = was accepted")
	}
}
