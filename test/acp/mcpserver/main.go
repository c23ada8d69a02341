// Command mcpserver is a small MCP server over stdio for cortex-acp's
// tests: "add" sums two numbers; "get_weather" reports a fixed forecast
// (the tool the local stack's tool-trained test model knows how to call).
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type addArgs struct {
	A float64 `json:"a" jsonschema:"the first number"`
	B float64 `json:"b" jsonschema:"the second number"`
}

func add(_ context.Context, _ *mcp.CallToolRequest, in addArgs) (*mcp.CallToolResult, any, error) {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("sum=%g", in.A+in.B)}}}, nil, nil
}

type weatherArgs struct {
	City string `json:"city" jsonschema:"the city"`
}

func weather(_ context.Context, _ *mcp.CallToolRequest, in weatherArgs) (*mcp.CallToolResult, any, error) {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{
		Text: fmt.Sprintf(`{"city":%q,"condition":"sunny","temperature_c":21}`, in.City)}}}, nil, nil
}

func main() {
	s := mcp.NewServer(&mcp.Implementation{Name: "calc", Version: "test"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "Add two numbers"}, add)
	mcp.AddTool(s, &mcp.Tool{Name: "get_weather", Description: "Get the current weather for a city"}, weather)
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
