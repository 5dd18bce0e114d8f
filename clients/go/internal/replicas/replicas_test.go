package replicas

import (
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestSplitKeepsOneTargetWholeAndDropsEmptyAddresses(t *testing.T) {
	for target, want := range map[string][]string{
		"localhost:7070":                   {"localhost:7070"},
		"dns:///crms.example:7070":         {"dns:///crms.example:7070"},
		"passthrough:///10.0.0.1:7070":     {"passthrough:///10.0.0.1:7070"},
		" a:7070 , b:7070,,":               {"a:7070", "b:7070"},
		"dns:///a:7070,passthrough:b:7070": {"dns:///a:7070", "passthrough:b:7070"},
		" , ":                              nil,
	} {
		if got := Split(target); !slices.Equal(got, want) {
			t.Errorf("Split(%q) = %q, want %q", target, got, want)
		}
	}
}

func TestMoveOnFromAnAddressMovesOnceAndWrapsAround(t *testing.T) {
	s, err := Dial([]string{"a:1", "b:1", "c:1"}, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Current() != 0 || s.Address(0) != "a:1" || s.Conn(2).Target() != "c:1" {
		t.Fatalf("new set: current %d, %s, %s", s.Current(), s.Address(0), s.Conn(2).Target())
	}
	s.MoveOn(0)
	s.MoveOn(0) // a second failure seen on a, after the first moved on: no effect
	if s.Current() != 1 {
		t.Fatalf("after two failures on a: current %d, want 1", s.Current())
	}
	s.MoveOn(1)
	s.MoveOn(2)
	if s.Current() != 0 {
		t.Fatalf("after the last address: current %d, want 0", s.Current())
	}
	if _, err := Dial(nil); err == nil {
		t.Fatal("Dial of no address: no error")
	}
}
