package setup

import (
	"os"
	"strings"
	"testing"
)

func TestParseStackOutputs(t *testing.T) {
	f, err := os.Open("testdata/describe-stacks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseStackOutputs(f)
	if err != nil {
		t.Fatal(err)
	}
	want := StackOutputs{
		Bucket:       "offload-originalsbucket-x1y2z3w4v5u6",
		Table:        "offload-Ledger-1R2T3Y4U5I6O",
		ResolverBase: "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws",
		Region:       "eu-west-1",
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseStackOutputsCases(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       StackOutputs
		err        string
	}{
		{"ResolverUrl only, slash dropped",
			`{"Stacks":[{"StackId":"arn:aws:cloudformation:us-gov-west-1:1:stack/a/b","Outputs":[{"OutputKey":"ResolverUrl","OutputValue":"https://x.lambda-url.us-gov-west-1.on.aws/"}]}]}`,
			StackOutputs{ResolverBase: "https://x.lambda-url.us-gov-west-1.on.aws", Region: "us-gov-west-1"}, ""},
		{"ResolverBase wins over ResolverUrl",
			`{"Stacks":[{"Outputs":[{"OutputKey":"ResolverBase","OutputValue":"https://b"},{"OutputKey":"ResolverUrl","OutputValue":"https://u/"}]}]}`,
			StackOutputs{ResolverBase: "https://b"}, ""},
		{"with the CDN, its distribution for erase",
			`{"Stacks":[{"Outputs":[{"OutputKey":"BucketName","OutputValue":"b"},{"OutputKey":"CdnDistributionId","OutputValue":"EDFDVBD6EXAMPLE"}]}]}`,
			StackOutputs{Bucket: "b", CdnDistribution: "EDFDVBD6EXAMPLE"}, ""},
		{"no outputs yet", `{"Stacks":[{"StackId":"arn:aws-cn:cloudformation:cn-north-1:1:stack/a/b"}]}`, StackOutputs{Region: "cn-north-1"}, ""},
		{"two stacks", `{"Stacks":[{"StackName":"a"},{"StackName":"b"}]}`, StackOutputs{}, "2 stacks (a, b)"},
		{"no stacks", `{}`, StackOutputs{}, `no "Stacks"`},
		{"not JSON", `Stacks: []`, StackOutputs{}, "not the JSON"},
		{"bad StackId", `{"Stacks":[{"StackId":"offload"}]}`, StackOutputs{}, "not a CloudFormation stack ARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStackOutputs(strings.NewReader(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func validConfig() Config {
	return Config{
		Watch: DefaultWatch, Archive: DefaultArchive, CacheDir: DefaultCacheDir, User: DefaultUser, WebGroup: DefaultWebGroup,
		Bucket: "offload-originals", Table: "offload-Ledger-1ABC", Region: "eu-west-1",
		ResolverBase: "https://abc.lambda-url.eu-west-1.on.aws",
	}
}

func TestValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("the defaults and a real stack's values: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		err    string // empty: valid
	}{
		{"local resolver", func(c *Config) { c.ResolverBase = "http://127.0.0.1:9001" }, ""},
		{"local resolver, IPv6", func(c *Config) { c.ResolverBase = "http://[::1]:9001" }, ""},
		{"resolver with a path", func(c *Config) { c.ResolverBase = "https://r.example/offload" }, ""},
		{"region us-gov", func(c *Config) { c.Region = "us-gov-west-1" }, ""},
		{"region of the sovereign cloud", func(c *Config) { c.Region = "eusc-de-east-1" }, ""},
		{"hot cache", func(c *Config) { c.AccessLog = "/var/log/lighttpd/access.log" }, ""},
		{"bucket with capitals", func(c *Config) { c.Bucket = "Bad_Bucket!!" }, "lowercase letters, digits, dots and hyphens only"},
		{"bucket too short", func(c *Config) { c.Bucket = "ab" }, "3 to 63"},
		{"bucket ends with hyphen", func(c *Config) { c.Bucket = "abc-" }, "begin and end"},
		{"bucket two dots", func(c *Config) { c.Bucket = "a..b" }, "two adjacent periods"},
		{"bucket an IP", func(c *Config) { c.Bucket = "192.168.5.4" }, "IP address"},
		{"bucket reserved prefix", func(c *Config) { c.Bucket = "xn--abc" }, "reserved"},
		{"bucket reserved suffix", func(c *Config) { c.Bucket = "abc-s3alias" }, "reserved"},
		{"bucket missing", func(c *Config) { c.Bucket = "" }, "--bucket (or the BucketName output): missing"},
		{"table with a slash", func(c *Config) { c.Table = "a/b/c" }, "not allowed in a table name"},
		{"table too short", func(c *Config) { c.Table = "ab" }, "a table name has 3 to 255"},
		{"region upper case", func(c *Config) { c.Region = "EU-WEST-1" }, "region code"},
		{"region an AZ", func(c *Config) { c.Region = "eu-west-1a" }, "region code"},
		{"resolver trailing slash", func(c *Config) { c.ResolverBase = "https://abc.lambda-url.eu-west-1.on.aws/" }, "no trailing slash"},
		{"resolver http", func(c *Config) { c.ResolverBase = "http://abc.lambda-url.eu-west-1.on.aws" }, "want https://HOST"},
		{"resolver query", func(c *Config) { c.ResolverBase = "https://abc.example?x=1" }, "no query"},
		{"resolver empty query", func(c *Config) { c.ResolverBase = "https://abc.example?" }, "no query"},
		{"resolver newline", func(c *Config) { c.ResolverBase = "https://abc.example\nEVIL=1" }, "resolver base"},
		{"resolver percent", func(c *Config) { c.ResolverBase = "https://abc.example/%41" }, "no '%'"},
		{"resolver no scheme", func(c *Config) { c.ResolverBase = "abc.example" }, "want https://HOST"},
		{"watch relative", func(c *Config) { c.Watch = "srv/www/static" }, "clean absolute"},
		{"watch with a space", func(c *Config) { c.Watch = "/srv/my www" }, "no blanks"},
		{"watch with a quote", func(c *Config) { c.Watch = `/srv/a"b` }, `no '"'`},
		{"archive inside watch", func(c *Config) { c.Archive = "/srv/www/static/archive" }, "must not contain one another"},
		{"cache is the archive", func(c *Config) { c.CacheDir = DefaultArchive }, "must not contain one another"},
		{"root relative", func(c *Config) { c.Root = "tmp" }, "--root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("err = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	managed := []KV{{"OFFLOAD_WATCH", "/srv/www/static"}, {"OFFLOAD_BUCKET", "b1"}, {"AWS_REGION", "eu-west-1"}}
	for _, tc := range []struct {
		name, have string
		force      bool
		want       string
		added      []string
		changed    []string
		conflicts  []string
	}{
		{name: "new file", want: strings.Join(envHeader, "\n") + "\nOFFLOAD_WATCH=/srv/www/static\nOFFLOAD_BUCKET=b1\nAWS_REGION=eu-west-1\n",
			added: []string{"OFFLOAD_WATCH", "OFFLOAD_BUCKET", "AWS_REGION"}},
		{name: "same values, others kept",
			have: "# mine\nOFFLOAD_WATCH=/srv/www/static\nAWS_PROFILE=host\n OFFLOAD_BUCKET = \"b1\"\nAWS_REGION='eu-west-1'\n",
			want: "# mine\nOFFLOAD_WATCH=/srv/www/static\nAWS_PROFILE=host\n OFFLOAD_BUCKET = \"b1\"\nAWS_REGION='eu-west-1'\n"},
		{name: "missing and empty keys are set, comments kept",
			have:  "# the package's placeholder\nOFFLOAD_BUCKET=\nOFFLOAD_QUIET=5s",
			want:  "# the package's placeholder\nOFFLOAD_BUCKET=b1\nOFFLOAD_QUIET=5s\n\nOFFLOAD_WATCH=/srv/www/static\nAWS_REGION=eu-west-1\n",
			added: []string{"OFFLOAD_BUCKET", "OFFLOAD_WATCH", "AWS_REGION"}},
		{name: "a person's value is refused",
			have:      "OFFLOAD_WATCH=/srv/www/static\nOFFLOAD_BUCKET=mine\nAWS_REGION=eu-west-1\n",
			want:      "OFFLOAD_WATCH=/srv/www/static\nOFFLOAD_BUCKET=mine\nAWS_REGION=eu-west-1\n",
			conflicts: []string{"OFFLOAD_BUCKET"}},
		{name: "a person's value is replaced with force, every copy",
			have: "OFFLOAD_WATCH=/srv/www/static\nOFFLOAD_BUCKET=mine\nAWS_REGION=eu-west-1\nOFFLOAD_BUCKET=mine2\n", force: true,
			want:    "OFFLOAD_WATCH=/srv/www/static\nOFFLOAD_BUCKET=b1\nAWS_REGION=eu-west-1\nOFFLOAD_BUCKET=b1\n",
			changed: []string{"OFFLOAD_BUCKET"}},
		{name: "commented-out key is not the key",
			have:  "#OFFLOAD_BUCKET=old\nOFFLOAD_WATCH=/srv/www/static\nAWS_REGION=eu-west-1\n",
			want:  "#OFFLOAD_BUCKET=old\nOFFLOAD_WATCH=/srv/www/static\nAWS_REGION=eu-west-1\n\nOFFLOAD_BUCKET=b1\n",
			added: []string{"OFFLOAD_BUCKET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var have []byte
			if tc.have != "" {
				have = []byte(tc.have)
			}
			m := MergeEnv(have, managed, tc.force)
			if string(m.Out) != tc.want {
				t.Errorf("file:\n%s\nwant:\n%s", m.Out, tc.want)
			}
			keys := func(cs []EnvConflict) []string {
				var k []string
				for _, c := range cs {
					k = append(k, c.Key)
				}
				return k
			}
			if strings.Join(m.Added, ",") != strings.Join(tc.added, ",") ||
				strings.Join(keys(m.Changed), ",") != strings.Join(tc.changed, ",") ||
				strings.Join(keys(m.Conflicts), ",") != strings.Join(tc.conflicts, ",") {
				t.Errorf("added %v changed %v conflicts %v; want %v %v %v", m.Added, keys(m.Changed), keys(m.Conflicts), tc.added, tc.changed, tc.conflicts)
			}
		})
	}
}

func TestACLRoundTripAndMask(t *testing.T) {
	base := aclFromMode(0o2755)
	got := base.withGroup(1234, 7)
	want := acl{{tagUserObj, 7, undefinedID}, {tagGroupObj, 5, undefinedID}, {tagGroup, 7, 1234}, {tagMask, 7, undefinedID}, {tagOther, 5, undefinedID}}
	if !got.equal(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	back, err := decodeACL(got.encode())
	if err != nil || !back.equal(got) {
		t.Fatalf("round trip: %v, %v", back, err)
	}
	// Adding the same entry again changes nothing: a second run is "unchanged".
	if again := got.withGroup(1234, 7); !again.equal(got) {
		t.Errorf("second time: %v", again)
	}
	// Another group's entry sorts by id, before the mask.
	two := got.withGroup(99, 5)
	if two[2] != (aclEntry{tagGroup, 5, 99}) || two[3] != (aclEntry{tagGroup, 7, 1234}) || two[4].tag != tagMask {
		t.Errorf("two groups: %v", two)
	}
}

// TestManagedEnvCDN: with the stack's CDN on, init writes its distribution
// into the env file, where erase reads it (OFFLOAD_CDN_DISTRIBUTION_ID):
// an erasure recorded done without invalidating the edge is what a
// forgotten --cdn-distribution gave. Without a CDN the key is not written.
func TestManagedEnvCDN(t *testing.T) {
	c := validConfig()
	for _, kv := range managedEnv(c) {
		if kv.Key == "OFFLOAD_CDN_DISTRIBUTION_ID" {
			t.Errorf("no CDN: env file gets %v", kv)
		}
	}
	c.CdnDistribution = "EDFDVBD6EXAMPLE"
	found := false
	for _, kv := range managedEnv(c) {
		if kv.Key == "OFFLOAD_CDN_DISTRIBUTION_ID" {
			found = kv.Value == "EDFDVBD6EXAMPLE"
		}
	}
	if !found {
		t.Errorf("CdnDistribution %q: env file %v; want OFFLOAD_CDN_DISTRIBUTION_ID=EDFDVBD6EXAMPLE", c.CdnDistribution, managedEnv(c))
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	c.CdnDistribution = "EDFDVBD6EXAMPLE\nOFFLOAD_BUCKET=other"
	if err := c.Validate(); err == nil {
		t.Errorf("Validate accepted CdnDistribution %q", c.CdnDistribution)
	}
}
