package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

const golden = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."

func openaiClient() openai.Client {
	return openai.NewClient(option.WithBaseURL(st.GatewayURL+"/v1/"), option.WithAPIKey(st.APIKey), option.WithMaxRetries(0))
}

func anthropicClient() anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(st.GatewayURL), aoption.WithAPIKey(st.APIKey), aoption.WithMaxRetries(0))
}

// 2. The OpenAI dialect through the official SDK: completions (the golden
// greedy text), chat, chat streaming, Responses, Responses streaming,
// embeddings.
func TestOpenAIDialectWithTheOfficialSDK(t *testing.T) {
	ctx := context.Background()
	c := openaiClient()
	// A plain answer's first token reaches the gateway as the neuron's
	// 103, which the time-to-first-token histogram counts.
	ttft := `cortex_gateway_time_to_first_token_seconds_count{api="openai",model="e2e/stories"}`
	before := metric(t, st.GatewayMetrics, ttft)

	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model:       "stories",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens:   openai.Int(40),
		Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if text := "Once upon a time" + comp.Choices[0].Text; !strings.HasPrefix(text, golden) {
		t.Fatalf("greedy completion through the gateway = %q", text)
	}
	if after := metric(t, st.GatewayMetrics, ttft); after != before+1 {
		t.Fatalf("a plain completion's first token was not timed: %s %v → %v", ttft, before, after)
	}

	params := openai.ChatCompletionNewParams{
		Model:       "tinystories",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Tell a story."), openai.UserMessage("Once upon a time")},
		MaxTokens:   openai.Int(24),
		Temperature: openai.Float(0),
	}
	chat, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if chat.Choices[0].Message.Content == "" || chat.Usage.CompletionTokens == 0 {
		t.Fatalf("chat: %+v", chat)
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != chat.Choices[0].Message.Content {
		t.Fatalf("streamed greedy text %q differs from non-streamed %q", got, chat.Choices[0].Message.Content)
	}
	if acc.Usage.CompletionTokens == 0 {
		t.Fatal("stream without usage")
	}

	rp := responses.ResponseNewParams{
		Model:           "stories",
		Instructions:    openai.String("Tell a story."),
		Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("Once upon a time")},
		MaxOutputTokens: openai.Int(24),
		Store:           openai.Bool(false),
	}
	resp, err := c.Responses.New(ctx, rp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OutputText() == "" || resp.Status != "completed" && resp.Status != "incomplete" {
		t.Fatalf("responses: status %s text %q", resp.Status, resp.OutputText())
	}
	rs := c.Responses.NewStreaming(ctx, rp)
	var done bool
	for rs.Next() {
		ev := rs.Current()
		if ev.Type == "response.completed" || ev.Type == "response.incomplete" {
			done = true
		}
	}
	if err := rs.Err(); err != nil || !done {
		t.Fatalf("responses stream: done=%v err=%v", done, err)
	}

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "stories",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a little girl", "a big dog"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 {
		t.Fatalf("embeddings: %d vectors", len(emb.Data))
	}
}

// 2. The Anthropic dialect through the official SDK: messages, streaming
// (checked against the event grammar too), count_tokens.
func TestAnthropicDialectWithTheOfficialSDK(t *testing.T) {
	ctx := context.Background()
	c := anthropicClient()
	params := anthropic.MessageNewParams{
		Model:     "stories",
		MaxTokens: 24,
		System:    []anthropic.TextBlockParam{{Text: "Tell a story."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Once upon a time"))},
	}
	// This SDK no longer exposes temperature; the API still takes it, and
	// greedy decoding makes the streamed and plain answers comparable.
	greedy := aoption.WithJSONSet("temperature", 0)
	msg, err := c.Messages.New(ctx, params, greedy)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) == 0 || msg.Content[0].Text == "" || msg.Usage.OutputTokens == 0 {
		t.Fatalf("message: %+v", msg)
	}
	stream := c.Messages.NewStreaming(ctx, params, greedy)
	acc := anthropic.Message{}
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Content[0].Text != msg.Content[0].Text || acc.StopReason != msg.StopReason {
		t.Fatalf("streamed %q/%s differs from %q/%s", acc.Content[0].Text, acc.StopReason, msg.Content[0].Text, msg.StopReason)
	}
	// The raw stream obeys the event grammar exactly.
	_, raw := post(t, "/v1/messages", map[string]any{"model": "stories", "max_tokens": 16, "stream": true,
		"messages": []any{map[string]any{"role": "user", "content": "Once"}}})
	if err := ssecheck.AnthropicStream(strings.NewReader(raw)); err != nil {
		t.Fatalf("grammar: %v\n%s", err, raw)
	}
	count, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{
		Model:    "stories",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Once upon a time"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if count.InputTokens < 4 {
		t.Fatalf("count_tokens = %d", count.InputTokens)
	}
}

var weatherSchema = map[string]any{
	"type": "object",
	// A bounded string: the tiny model knows no cities and would otherwise
	// ramble inside the quotes until max_tokens.
	"properties":           map[string]any{"city": map[string]any{"type": "string", "maxLength": 16}},
	"required":             []string{"city"},
	"additionalProperties": false,
}

func checkCity(t *testing.T, dialect, args string) {
	t.Helper()
	var v struct {
		City *string `json:"city"`
	}
	if err := json.Unmarshal([]byte(args), &v); err != nil || v.City == nil {
		t.Fatalf("%s: tool arguments %q do not match the schema: %v", dialect, args, err)
	}
}

// Forced tool call round trips: the tiny model knows nothing of tools, so
// the call is grammar-constrained; the result goes back and the model
// answers.
func TestForcedToolCallRoundTripInEachDialect(t *testing.T) {
	ctx := context.Background()
	oc := openaiClient()

	// OpenAI chat.
	tool := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather", Parameters: weatherSchema})
	params := openai.ChatCompletionNewParams{
		Model:      "stories",
		Messages:   []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
		Tools:      []openai.ChatCompletionToolUnionParam{tool},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &openai.ChatCompletionNamedToolChoiceParam{Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"}}},
		MaxTokens:  openai.Int(200),
	}
	first, err := oc.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	calls := first.Choices[0].Message.ToolCalls
	if len(calls) != 1 || calls[0].Function.Name != "get_weather" || first.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("openai: finish %s, usage %+v, message %q", first.Choices[0].FinishReason, first.Usage.RawJSON(), first.Choices[0].Message.RawJSON())
	}
	checkCity(t, "openai", calls[0].Function.Arguments)
	params.Messages = append(params.Messages, first.Choices[0].Message.ToParam(), openai.ToolMessage(`{"temperature_c": 21}`, calls[0].ID))
	params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}
	params.MaxTokens = openai.Int(16)
	second, err := oc.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if second.Choices[0].Message.Content == "" {
		t.Fatalf("openai answer after the tool result: %+v", second.Choices[0])
	}

	// Anthropic messages.
	ac := anthropicClient()
	ap := anthropic.MessageNewParams{
		Model:     "stories",
		MaxTokens: 200,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is the weather in Paris?"))},
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather",
			InputSchema: anthropic.ToolInputSchemaParam{Properties: weatherSchema["properties"], Required: []string{"city"}}}}},
		ToolChoice: anthropic.ToolChoiceParamOfTool("get_weather"),
	}
	am, err := ac.Messages.New(ctx, ap)
	if err != nil {
		t.Fatal(err)
	}
	var use *anthropic.ContentBlockUnion
	for i := range am.Content {
		if am.Content[i].Type == "tool_use" {
			use = &am.Content[i]
		}
	}
	if use == nil || use.Name != "get_weather" || am.StopReason != "tool_use" {
		t.Fatalf("anthropic: %+v", am)
	}
	checkCity(t, "anthropic", string(use.Input))
	ap.Messages = append(ap.Messages, am.ToParam(), anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, `{"temperature_c": 21}`, false)))
	ap.ToolChoice = anthropic.ToolChoiceUnionParam{OfAuto: &anthropic.ToolChoiceAutoParam{}}
	ap.MaxTokens = 16
	am2, err := ac.Messages.New(ctx, ap)
	if err != nil {
		t.Fatal(err)
	}
	if len(am2.Content) == 0 {
		t.Fatalf("anthropic answer after the tool result: %+v", am2)
	}

	// Responses.
	rp := responses.ResponseNewParams{
		Model: "stories",
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("What is the weather in Paris?", responses.EasyInputMessageRoleUser),
		}},
		Tools:           []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", weatherSchema, true)},
		ToolChoice:      responses.ResponseNewParamsToolChoiceUnion{OfFunctionTool: &responses.ToolChoiceFunctionParam{Name: "get_weather"}},
		MaxOutputTokens: openai.Int(200),
		Store:           openai.Bool(false),
	}
	r1, err := oc.Responses.New(ctx, rp)
	if err != nil {
		t.Fatal(err)
	}
	var call struct {
		Type      string `json:"type"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	}
	for _, item := range r1.Output {
		if item.Type == "function_call" {
			_ = json.Unmarshal([]byte(item.RawJSON()), &call)
		}
	}
	if call.Name != "get_weather" || call.CallID == "" {
		t.Fatalf("responses: no function_call item: %s", r1.RawJSON())
	}
	checkCity(t, "responses", call.Arguments)
	out := responses.ResponseInputItemParamOfFunctionCallOutput(`{"temperature_c": 21}`)
	out.OfFunctionCallOutput.CallID = openai.String(call.CallID)
	rp.Input.OfInputItemList = append(rp.Input.OfInputItemList,
		responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name), out)
	rp.ToolChoice = responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsNone)}
	rp.MaxOutputTokens = openai.Int(16)
	r2, err := oc.Responses.New(ctx, rp)
	if err != nil {
		t.Fatal(err)
	}
	if r2.OutputText() == "" {
		t.Fatalf("responses answer after the tool output: %s", r2.RawJSON())
	}
}
