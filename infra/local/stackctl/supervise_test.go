package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// TestSuperviseRestartsUntilStopped runs the real stackctl binary's
// supervisor over a sleep: a child killed with SIGKILL is started again and
// recorded, and SIGTERM, to the supervisor alone or to its process group
// as "down" sends it, stops the child for good. "down" signals the whole
// group at once, so the supervisor may see its child die before its own
// signal arrives: that order is forced once too.
func TestSuperviseRestartsUntilStopped(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, "./infra/local/stackctl")["stackctl"]
	for _, tt := range []struct {
		name       string
		group      bool // signal the process group, as "down" does
		childFirst bool // the child gets its SIGTERM, and dies, first
	}{
		{"SIGTERM to the supervisor", false, false},
		{"SIGTERM to the process group", true, false},
		{"SIGTERM to the child, then the supervisor", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			restarts, logPath := filepath.Join(dir, "restarts"), filepath.Join(dir, "supervise.log")
			// A sleep of an odd length is a child no other process looks like.
			marker := strconv.Itoa(1_000_000 + rand.IntN(1_000_000))
			sup := startSupervisor(t, bin, logPath, "--name", "sleeper", "--restarts", restarts, "--", "sleep", marker)

			first := waitChild(t, sup.Process.Pid, 0)
			if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the restart to be recorded", func() error { return wantRestarts(readRestarts(t, restarts), 1) })
			second := waitChild(t, sup.Process.Pid, first)
			if r := readRestarts(t, restarts)[0]; r.Reason != "signal: killed" || r.Started.Before(r.Exited) {
				t.Errorf("restart = %+v; want reason %q, started after exited", r, "signal: killed")
			}

			if tt.childFirst {
				if err := syscall.Kill(second, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				time.Sleep(minRestartDelay / 5)
			}
			target := sup.Process.Pid
			if tt.group {
				target = -target
			}
			if err := syscall.Kill(target, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := waitExit(sup, 10*time.Second); err != nil {
				t.Fatalf("supervisor after SIGTERM: %v", err)
			}
			// Longer than the pause before a restart: a wrong restart would show.
			time.Sleep(2 * minRestartDelay)
			if pids := processesWith("sleep\x00" + marker); len(pids) > 0 {
				t.Errorf("after SIGTERM the supervised sleep still runs: pids %v (children were %d, %d)", pids, first, second)
			}
			if got := len(readRestarts(t, restarts)); got != 1 {
				t.Errorf("restarts after SIGTERM = %d; want 1 (no restart on a stop)", got)
			}
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("supervisor log:\n%s", b)
			}
		})
	}
}

// TestDynaliteSurvivesACrash brings up a private stack with the real
// stackctl, kills its dynalite (the node process under the supervisor) with
// SIGKILL, and checks that dynalite answers again with the table and the
// item written before the kill, that the restart is counted once, and that
// "down" leaves no dynalite behind.
func TestDynaliteSurvivesACrash(t *testing.T) {
	t.Parallel()
	outer := stacktest.Require(t) // for the installed tools and the credentials
	bin := stacktest.Build(t, "./infra/local/stackctl")["stackctl"]
	repo := stacktest.RepoRoot(t)
	cache := os.Getenv("OFFLOAD_CACHE")
	if cache == "" {
		cache = filepath.Join(repo, ".cache")
	}
	dir := t.TempDir()
	stackctl := func(args ...string) error {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "OFFLOAD_REPO="+repo, "OFFLOAD_CACHE="+cache, "OFFLOAD_STACK_DIR="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("stackctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		if err := stackctl("down"); err != nil {
			t.Error(err)
		}
	})
	if err := stackctl("up"); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sup service
	for _, s := range st.Services {
		if s.Name == "dynalite" {
			sup = s
		}
	}
	private := &stacktest.Stack{DynamoDBEndpoint: st.DynamoDBEndpoint}
	for _, kv := range st.env() {
		if kv[0] == "OFFLOAD_DYNALITE_RESTARTS" {
			private.DynaliteRestartsFile = kv[1]
		}
	}
	if sup.PID == 0 || private.DynaliteRestartsFile == "" {
		t.Fatalf("the stack's state has no dynalite service (%+v) or no OFFLOAD_DYNALITE_RESTARTS (%q)", sup, private.DynaliteRestartsFile)
	}

	ctx := context.Background()
	db := outer.DynamoDBAt(t, st.DynamoDBEndpoint)
	key := stacktest.Prefix(t) + "survivor.jpg"
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]dbtypes.AttributeValue{
		offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key},
		"size":                     &dbtypes.AttributeValueMemberN{Value: "42"},
	}}); err != nil {
		t.Fatalf("PutItem before the kill: %v", err)
	}
	if got := len(private.DynaliteRestarts(t)); got != 0 {
		t.Fatalf("restarts before the kill = %d; want 0", got)
	}

	node := waitChild(t, sup.PID, 0)
	dataDir := filepath.Join(st.DataDir, "dynalite")
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", node)); !strings.Contains(string(cmdline), "--path\x00"+dataDir) {
		t.Fatalf("the supervisor's child %d runs %q; want dynalite with --path %s", node, cmdline, dataDir)
	}
	if err := syscall.Kill(node, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "dynalite's restart to be recorded", func() error { return wantRestarts(private.DynaliteRestarts(t), 1) })
	restarted := waitChild(t, sup.PID, node)

	// It answers again on the same address, with the table and the item.
	var item map[string]dbtypes.AttributeValue
	waitFor(t, 20*time.Second, "dynalite to answer GetItem again", func() error {
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]dbtypes.AttributeValue{offload.LedgerPartitionKey: &dbtypes.AttributeValueMemberS{Value: key}}})
		if err != nil {
			return err
		}
		item = out.Item
		return nil
	})
	if n, ok := item["size"].(*dbtypes.AttributeValueMemberN); !ok || n.Value != "42" {
		t.Errorf("after the restart GetItem(%s) = %v; want the item written before the kill (size 42)", key, item)
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("DescribeTable after the restart: %v", err)
	}
	if got := desc.Table.TableStatus; got != dbtypes.TableStatusActive {
		t.Errorf("table %s after the restart: status %s; want ACTIVE", table, got)
	}
	if got := private.DynaliteRestarts(t); len(got) != 1 || got[0].Reason != "signal: killed" {
		t.Errorf("restarts after one kill = %+v; want exactly one, \"signal: killed\"", got)
	}
	if err := stackctl("status"); err != nil {
		t.Errorf("the stack is not healthy after dynalite's restart: %v", err)
	}

	if err := stackctl("down"); err != nil {
		t.Fatal(err)
	}
	if sup.alive() {
		t.Errorf("the supervisor (pid %d) still runs after down", sup.PID)
	}
	if pids := processesWith(dataDir); len(pids) > 0 {
		t.Errorf("after down, processes still use dynalite's data folder: pids %v (children were %d, %d)", pids, node, restarted)
	}
}

// startSupervisor starts "stackctl supervise ARGS" in its own process group,
// as "up" starts a service, and kills the group when the test ends.
func startSupervisor(t *testing.T, bin, logPath string, args ...string) *exec.Cmd {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(bin, append([]string{"supervise"}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// waitExit waits for the command to end and wants exit status 0.
func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return errors.New("still running after " + d.String())
	}
}

// waitChild waits until the process parent has a running child other than
// not, and returns its PID.
func waitChild(t *testing.T, parent, not int) int {
	t.Helper()
	var child int
	waitFor(t, 20*time.Second, fmt.Sprintf("a new child of pid %d", parent), func() error {
		pids := childrenOf(parent)
		for _, pid := range pids {
			if pid != not {
				child = pid
				return nil
			}
		}
		return fmt.Errorf("children: %v", pids)
	})
	return child
}

// childrenOf lists the live (not zombie) children of a process, from /proc.
func childrenOf(parent int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// After the command name in parentheses: state, then the parent's PID.
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(fields) > 1 && fields[0] != "Z" && fields[1] == strconv.Itoa(parent) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesWith lists the processes whose command line (arguments joined
// by NUL bytes) contains s: what ps would show.
func processesWith(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func readRestarts(t *testing.T, path string) []stacktest.DynaliteRestart {
	t.Helper()
	r, err := stacktest.ReadDynaliteRestarts(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls cond until it returns nil, or fails the test after d with
// cond's last error.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", d, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantRestarts(got []stacktest.DynaliteRestart, want int) error {
	if len(got) != want {
		return fmt.Errorf("%d restarts recorded, want %d", len(got), want)
	}
	return nil
}
