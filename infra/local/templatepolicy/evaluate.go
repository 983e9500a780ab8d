package templatepolicy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Stack is what a deployed stack's references resolve to, for Outputs and
// Condition: what CloudFormation knows only once the resources exist.
type Stack struct {
	Parameters map[string]string // values given at deploy time; the others take the template's Default
	Refs       map[string]string // Ref of a resource (its name or ARN) and pseudo parameters ("AWS::Region")
	Attrs      map[string]string // Fn::GetAtt values, by "Resource.Attribute"
}

// Outputs evaluates the template's Outputs for s, as "aws cloudformation
// describe-stacks" would show them: each Value resolved, and an output
// whose Condition is false left out. It knows the intrinsic functions the
// template uses (Ref, Fn::GetAtt, Fn::Sub, Fn::Select, Fn::Split, Fn::Join,
// Fn::If and the condition functions); anything else, or a reference s
// does not resolve, is an error, so a template change this cannot follow
// fails a test instead of passing unseen.
//
// Their documented behaviour, followed here:
// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-sub.html
// (${Name} is a Ref, ${Resource.Attribute} a GetAtt, ${!Literal} the
// text ${Literal}, and the variable map's names come first),
// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-split.html
// (every delimiter splits, so consecutive or trailing ones give empty
// strings: "a||c|" is ["a", "", "c", ""]) and
// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-select.html
// (a zero-based index, as a number or a string; out of range is an error).
func Outputs(template []byte, s Stack) (map[string]string, error) {
	e, err := newEvaluator(template, s)
	if err != nil {
		return nil, err
	}
	outputs := child(e.root, "Outputs")
	if outputs == nil || outputs.Kind != yaml.MappingNode {
		return nil, errors.New("template: no Outputs")
	}
	out := map[string]string{}
	for i := 0; i+1 < len(outputs.Content); i += 2 {
		name, o := outputs.Content[i].Value, outputs.Content[i+1]
		if c := child(o, "Condition"); c != nil {
			on, err := e.condition(c.Value)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", name, err)
			}
			if !on {
				continue
			}
		}
		v, err := e.eval(child(o, "Value"))
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		str, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("output %s: value %v is not a string", name, v)
		}
		out[name] = str
	}
	return out, nil
}

// Condition evaluates the template's condition name for s.
func Condition(template []byte, name string, s Stack) (bool, error) {
	e, err := newEvaluator(template, s)
	if err != nil {
		return false, err
	}
	return e.condition(name)
}

type evaluator struct {
	root  *yaml.Node // the template's top-level mapping
	stack Stack
}

func newEvaluator(template []byte, s Stack) (*evaluator, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(template, &doc); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("template: not a YAML mapping")
	}
	return &evaluator{root: doc.Content[0], stack: s}, nil
}

func (e *evaluator) condition(name string) (bool, error) {
	c := child(child(e.root, "Conditions"), name)
	if c == nil {
		return false, fmt.Errorf("no condition %s", name)
	}
	v, err := e.eval(c)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition %s: %v is not a boolean", name, v)
	}
	return b, nil
}

// ref resolves a Ref: a parameter (given, else its Default), a resource or
// a pseudo parameter from the stack.
func (e *evaluator) ref(name string) (string, error) {
	if p := child(child(e.root, "Parameters"), name); p != nil {
		if v, ok := e.stack.Parameters[name]; ok {
			return v, nil
		}
		if d := child(p, "Default"); d != nil {
			return d.Value, nil
		}
		return "", fmt.Errorf("parameter %s has no value and no Default", name)
	}
	if v, ok := e.stack.Refs[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("unknown reference %s", name)
}

func (e *evaluator) getAtt(name string) (string, error) {
	if v, ok := e.stack.Attrs[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("unknown attribute %s", name)
}

// eval returns a string, a []string or a bool.
func (e *evaluator) eval(n *yaml.Node) (any, error) {
	if n == nil {
		return nil, errors.New("missing value")
	}
	fn, arg := function(n)
	switch fn {
	case "":
		switch n.Kind {
		case yaml.ScalarNode:
			return n.Value, nil
		case yaml.SequenceNode:
			return e.strings(n)
		}
		return nil, fmt.Errorf("line %d: a value this evaluator does not know", n.Line)
	case "Ref":
		return e.ref(arg.Value)
	case "Fn::GetAtt":
		if arg.Kind == yaml.SequenceNode && len(arg.Content) == 2 {
			return e.getAtt(arg.Content[0].Value + "." + arg.Content[1].Value)
		}
		return e.getAtt(arg.Value)
	case "Fn::Sub":
		return e.sub(arg)
	case "Fn::Select":
		args, err := e.args(arg, 2)
		if err != nil {
			return nil, err
		}
		idx, err := e.eval(args[0])
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(fmt.Sprint(idx))
		if err != nil {
			return nil, fmt.Errorf("line %d: Fn::Select index %v", arg.Line, idx)
		}
		list, err := e.list(args[1])
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= len(list) {
			return nil, fmt.Errorf("line %d: Fn::Select index %d outside the list %q", arg.Line, i, list)
		}
		return list[i], nil
	case "Fn::Split":
		args, err := e.args(arg, 2)
		if err != nil {
			return nil, err
		}
		src, err := e.str(args[1])
		if err != nil {
			return nil, err
		}
		return strings.Split(src, args[0].Value), nil
	case "Fn::Join":
		args, err := e.args(arg, 2)
		if err != nil {
			return nil, err
		}
		list, err := e.list(args[1])
		if err != nil {
			return nil, err
		}
		return strings.Join(list, args[0].Value), nil
	case "Fn::If":
		args, err := e.args(arg, 3)
		if err != nil {
			return nil, err
		}
		on, err := e.condition(args[0].Value)
		if err != nil {
			return nil, err
		}
		if on {
			return e.eval(args[1])
		}
		return e.eval(args[2])
	case "Fn::Equals":
		args, err := e.args(arg, 2)
		if err != nil {
			return nil, err
		}
		a, err := e.str(args[0])
		if err != nil {
			return nil, err
		}
		b, err := e.str(args[1])
		return a == b, err
	case "Fn::Not", "Fn::And", "Fn::Or":
		if arg.Kind != yaml.SequenceNode || len(arg.Content) == 0 {
			return nil, fmt.Errorf("line %d: %s wants a list", arg.Line, fn)
		}
		var vals []bool
		for _, c := range arg.Content {
			v, err := e.eval(c)
			if err != nil {
				return nil, err
			}
			b, ok := v.(bool)
			if !ok {
				return nil, fmt.Errorf("line %d: %s of %v, not a boolean", c.Line, fn, v)
			}
			vals = append(vals, b)
		}
		switch fn {
		case "Fn::Not":
			return !vals[0], nil
		case "Fn::And":
			for _, b := range vals {
				if !b {
					return false, nil
				}
			}
			return true, nil
		default:
			for _, b := range vals {
				if b {
					return true, nil
				}
			}
			return false, nil
		}
	case "Condition":
		return e.condition(arg.Value)
	}
	return nil, fmt.Errorf("line %d: %s is not known to this evaluator", n.Line, fn)
}

// function names the intrinsic function n is, in its short form (!Sub) or
// its long one (Fn::Sub: ...), with its argument; "" for a plain value.
func function(n *yaml.Node) (string, *yaml.Node) {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		name := n.Tag[1:]
		if name != "Ref" && name != "Condition" {
			name = "Fn::" + name
		}
		// The node itself, untagged, is the argument.
		arg := *n
		arg.Tag = ""
		switch arg.Kind {
		case yaml.ScalarNode:
			arg.Tag = "!!str"
		case yaml.SequenceNode:
			arg.Tag = "!!seq"
		case yaml.MappingNode:
			arg.Tag = "!!map"
		}
		return name, &arg
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		k := n.Content[0].Value
		if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
			return k, n.Content[1]
		}
	}
	return "", nil
}

func (e *evaluator) args(n *yaml.Node, count int) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != count {
		return nil, fmt.Errorf("line %d: want a list of %d arguments", n.Line, count)
	}
	return n.Content, nil
}

func (e *evaluator) str(n *yaml.Node) (string, error) {
	v, err := e.eval(n)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("line %d: %v is not a string", n.Line, v)
	}
	return s, nil
}

func (e *evaluator) list(n *yaml.Node) ([]string, error) {
	v, err := e.eval(n)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]string)
	if !ok {
		return nil, fmt.Errorf("line %d: %v is not a list", n.Line, v)
	}
	return l, nil
}

func (e *evaluator) strings(n *yaml.Node) ([]string, error) {
	var out []string
	for _, c := range n.Content {
		s, err := e.str(c)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// sub evaluates Fn::Sub: a string, or a string and a variable map.
func (e *evaluator) sub(arg *yaml.Node) (string, error) {
	text := arg
	vars := map[string]string{}
	if arg.Kind == yaml.SequenceNode {
		if len(arg.Content) != 2 || arg.Content[1].Kind != yaml.MappingNode {
			return "", fmt.Errorf("line %d: Fn::Sub wants a string and a variable map", arg.Line)
		}
		text = arg.Content[0]
		m := arg.Content[1]
		for i := 0; i+1 < len(m.Content); i += 2 {
			v, err := e.str(m.Content[i+1])
			if err != nil {
				return "", err
			}
			vars[m.Content[i].Value] = v
		}
	}
	if text.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: Fn::Sub wants a string", text.Line)
	}
	var firstErr error
	out := subRef.ReplaceAllStringFunc(text.Value, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		if v, ok := vars[name]; ok {
			return v
		}
		var v string
		var err error
		if strings.Contains(name, ".") && !strings.HasPrefix(name, "AWS::") {
			v, err = e.getAtt(name)
		} else {
			v, err = e.ref(name)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("line %d: Fn::Sub: %w", text.Line, err)
		}
		return v
	})
	return out, firstErr
}
