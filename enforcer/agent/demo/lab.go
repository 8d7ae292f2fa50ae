package demo

import (
	"errors"
	"fmt"

	"github.com/podwall/podwall/internal/netns"
)

// newLab builds a netns lab; close removes every namespace it made.
func newLab() (lab *netns.Lab, close func() error, err error) {
	lab, err = netns.Build()
	if errors.Is(err, netns.ErrUnavailable) {
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return lab, lab.Close, nil
}
