package addrset_test

import (
	"fmt"

	"github.com/podwall/podwall/policylib/addrset"
)

func ExampleIPBlock() {
	s, err := addrset.IPBlock("10.0.0.0/16", []string{"10.0.1.0/24"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s)
	for _, p := range s.Prefixes() {
		fmt.Println(p)
	}
	// Output:
	// {10.0.0.0/24, 10.0.2.0-10.0.255.255}
	// 10.0.0.0/24
	// 10.0.2.0/23
	// 10.0.4.0/22
	// 10.0.8.0/21
	// 10.0.16.0/20
	// 10.0.32.0/19
	// 10.0.64.0/18
	// 10.0.128.0/17
}

func ExampleIPBlock_error() {
	_, err := addrset.IPBlock("10.0.0.0/16", []string{"10.0.1.0/24", "10.1.0.0/24"})
	fmt.Println(err)
	// Output:
	// invalid except[1] "10.1.0.0/24": not strictly inside cidr 10.0.0.0/16
}
