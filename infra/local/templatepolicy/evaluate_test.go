package templatepolicy

import (
	"strings"
	"testing"
)

// TestOutputsFollowsCloudFormation: the evaluator gives the answers AWS's
// pages give for their own examples, and refuses what it does not know.
func TestOutputsFollowsCloudFormation(t *testing.T) {
	const head = "Parameters:\n  P:\n    Type: String\n    Default: dflt\nConditions:\n  IsX: !Equals [!Ref P, x]\n  NotX: !Not [!Condition IsX]\nOutputs:\n"
	s := Stack{Refs: map[string]string{"R": "r-1", "AWS::Region": "eu-west-1"}, Attrs: map[string]string{"R.Url": "https://h.example/"}}
	for _, tt := range []struct{ name, output, want string }{
		{"split keeps empty strings", `!Join ["+", !Split ["|", "a||c|"]]`, "a++c+"},
		{"select index as a string", `!Select ["1", [a, b, c]]`, "b"},
		{"sub with refs, attributes, pseudo parameters", `!Sub "${R} ${R.Url} ${AWS::Region} ${P}"`, "r-1 https://h.example/ eu-west-1 dflt"},
		{"sub literal", `!Sub "${!Literal}-${R}"`, "${Literal}-r-1"},
		{"sub variable map first", `!Sub ["${R}", {R: mine}]`, "mine"},
		{"long form", "\n      Fn::Select: [2, {\"Fn::Split\": [\"/\", {\"Fn::GetAtt\": [R, Url]}]}]", "h.example"},
		{"if", `!If [NotX, yes, no]`, "yes"},
	} {
		out, err := Outputs([]byte(head+"  O:\n    Value: "+tt.output+"\n"), s)
		if err != nil || out["O"] != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, out["O"], err, tt.want)
		}
	}
	for name, output := range map[string]string{
		"select out of range": `!Select [3, [a, b, c]]`,
		"unknown reference":   `!Ref Nope`,
		"unknown attribute":   `!Sub "${R.Arn}"`,
		"unknown function":    `!Base64 x`,
	} {
		if out, err := Outputs([]byte(head+"  O:\n    Value: "+output+"\n"), s); err == nil {
			t.Errorf("%s: %q, no error", name, out["O"])
		}
	}
	out, err := Outputs([]byte(head+"  O:\n    Condition: IsX\n    Value: v\n"), Stack{Parameters: map[string]string{"P": "y"}})
	if _, ok := out["O"]; ok || err != nil {
		t.Errorf("an output whose condition is false: %v, %v; want it left out", out, err)
	}
	if _, err := Outputs([]byte(strings.Replace(head, "Default: dflt", "", 1)+"  O:\n    Value: !Ref P\n"), s); err == nil {
		t.Errorf("a parameter with no value and no default: no error")
	}
}
