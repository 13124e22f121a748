/* test_openai_to_anthropic.c - an OpenAI client's request, answer, stream and errors through an Anthropic upstream. */
#include "../../src/dialect/openai_to_anthropic.c"
#include "unit.h"

static const dialect_ops_t *ops = &dialect_openai_to_anthropic;
static dialect_err_t err;
static dialect_req_info_t info;
static dialect_usage_t usage;
static long default_max = 2048;

/* S with each ' made a " (JSON in C strings reads better so), in a buffer
 * that lives until the next call with the same SLOT. */
static const char *J(int slot, const char *s)
{
    static char buf[2][8192];
    size_t n = strlen(s);
    if (n >= sizeof(buf[0]))
        n = sizeof(buf[0]) - 1;
    for (size_t i = 0; i < n; i++)
        buf[slot][i] = s[i] == '\'' ? '"' : s[i];
    buf[slot][n] = '\0';
    return buf[slot];
}

/* B's bytes as a string (the caller frees), each "created":N as "created":0. */
static char *drain(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b), w = 0;
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    for (size_t r = 0; r < n;) {
        if (strncmp(s + r, "\"created\":", 10) == 0 && r + 10 < n && s[r + 10] >= '0' && s[r + 10] <= '9') {
            memcpy(s + w, "\"created\":0", 11);
            w += 11;
            r += 10;
            while (r < n && s[r] >= '0' && s[r] <= '9')
                r++;
        } else {
            s[w++] = s[r++];
        }
    }
    s[w] = '\0';
    return s;
}

/* Whether B holds exactly WANT (after ' -> "); says what it held when not. */
static int holds(struct evbuffer *b, const char *want, int line)
{
    char *got = drain(b);
    const char *w = J(1, want);
    int ok = strcmp(got, w) == 0;
    if (!ok)
        fprintf(stderr, "line %d:\n  got:  %s\n  want: %s\n", line, got, w);
    free(got);
    return ok;
}

/* Whether BODY translates to WANT. */
static int req_is(const char *body, const char *want, int line)
{
    struct evbuffer *b = evbuffer_new();
    dialect_req_opts_t o = { "claude-x", default_max };
    const char *in = J(0, body);
    int rc = ops->request(in, strlen(in), &o, b, &info, &err), ok;
    if (rc != 0)
        fprintf(stderr, "line %d: refused: %s %s: %s\n", line, err.code, err.param, err.message);
    ok = rc == 0 && holds(b, want, line);
    evbuffer_free(b);
    return ok;
}
#define REQ(body, want) CHECK(req_is(body, want, __LINE__))

/* Whether BODY is refused with CODE naming PARAM, with a message. */
static int refused(const char *body, const char *code, const char *param, int line)
{
    struct evbuffer *b = evbuffer_new();
    dialect_req_opts_t o = { "claude-x", default_max };
    const char *in = J(0, body);
    int rc = ops->request(in, strlen(in), &o, b, &info, &err);
    int ok = rc == -1 && err.code && strcmp(err.code, code) == 0 && strcmp(err.param, param) == 0 &&
             err.message[0] != '\0';
    if (!ok)
        fprintf(stderr, "line %d: rc %d code %s param '%s' (want %s '%s'): %s\n", line, rc,
                err.code ? err.code : "-", err.param, code, param, err.message);
    evbuffer_free(b);
    return ok;
}
#define UNSUP(body, param) CHECK(refused(body, "unsupported_parameter", param, __LINE__))
#define INVAL(body, param) CHECK(refused(body, "invalid_request", param, __LINE__))

/* A body of one user message "hi" and the fields X; its translation with
 * the fields Y. */
#define B(x) "{'model':'gpt-4o','messages':[{'role':'user','content':'hi'}]" x "}"
#define T(y) "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'hi'}]}]" y "}"
/* one tool, for tool_choice */
#define TOOL ",'tools':[{'type':'function','function':{'name':'f'}}]"
#define TOOL_OUT ",'tools':[{'name':'f','input_schema':{'type':'object'}}]"

static void test_request_text(void)
{
    /* only a system message: no message piece is written at all (the
     * fuzzer found an empty piece copied from NULL, undefined behaviour);
     * the upstream is the one to say that Anthropic wants a message */
    REQ("{'model':'','messages':[{'role':'system','content':'s'}]}",
        "{'model':'claude-x','max_tokens':2048,'system':[{'type':'text','text':'s'}],'messages':[]}");
    REQ("{'model':'gpt-4o','messages':[{'role':'system','content':'Be brief.'},{'role':'user','content':'Hi'},"
        "{'role':'developer','content':[{'type':'text','text':'Use French.'}]},{'role':'assistant','content':'Salut'},"
        "{'role':'user','content':[{'type':'text','text':'Again'},{'type':'text','text':''}]}],"
        "'max_tokens':100,'temperature':0.5,'top_p':0.9,'stop':'END','user':'u-1','stream':true,"
        "'stream_options':{'include_usage':true},'n':1,'logprobs':false,'presence_penalty':0,'frequency_penalty':0,"
        "'response_format':{'type':'text'},'modalities':['text'],'logit_bias':{},'store':false,'metadata':{'a':'b'},"
        "'seed':null,'top_logprobs':null}",
        "{'model':'claude-x','max_tokens':100,'system':[{'type':'text','text':'Be brief.'},{'type':'text','text':'Use French.'}],"
        "'messages':[{'role':'user','content':[{'type':'text','text':'Hi'}]},"
        "{'role':'assistant','content':[{'type':'text','text':'Salut'}]},"
        "{'role':'user','content':[{'type':'text','text':'Again'}]}],"
        "'stop_sequences':['END'],'temperature':0.5,'top_p':0.9,'metadata':{'user_id':'u-1'},'stream':true}");
    CHECK(info.stream == 1 && info.include_usage == 1);

    /* defaults and the other forms of each field */
    REQ(B(""), T(""));
    CHECK(info.stream == 0 && info.include_usage == 0);
    REQ(B(",'stream':false,'stream_options':{'include_usage':true}"), T(""));
    CHECK(info.stream == 0 && info.include_usage == 0);
    REQ(B(",'stream':true"), T(",'stream':true"));
    CHECK(info.stream == 1 && info.include_usage == 0);
    REQ(B(",'stream':true,'stream_options':{'include_usage':false,'include_obfuscation':true}"), T(",'stream':true"));
    CHECK(info.stream == 1 && info.include_usage == 0);
    REQ(B(",'max_completion_tokens':77"),
        "{'model':'claude-x','max_tokens':77,'messages':[{'role':'user','content':[{'type':'text','text':'hi'}]}]}");
    REQ(B(",'max_tokens':5,'max_completion_tokens':5"),
        "{'model':'claude-x','max_tokens':5,'messages':[{'role':'user','content':[{'type':'text','text':'hi'}]}]}");
    default_max = 0;
    REQ(B(""), "{'model':'claude-x','max_tokens':4096,'messages':[{'role':'user','content':[{'type':'text','text':'hi'}]}]}");
    default_max = 2048;
    REQ(B(",'stop':['a','b']"), T(",'stop_sequences':['a','b']"));
    REQ(B(",'stop':[]"), T(""));
    REQ(B(",'stop':null,'temperature':null,'user':null"), T(""));
    REQ(B(",'temperature':1"), T(",'temperature':1"));
    REQ(B(",'temperature':0,'top_p':1"), T(",'temperature':0,'top_p':1"));
    REQ(B(",'safety_identifier':'s-9'"), T(",'metadata':{'user_id':'s-9'}"));
    REQ(B(",'user':'s-9','safety_identifier':'s-9'"), T(",'metadata':{'user_id':'s-9'}"));
    /* an assistant message without content (a prefill is never empty, but the upstream judges) */
    REQ("{'messages':[{'role':'user','content':'hi'},{'role':'assistant','content':null}]}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'hi'}]},"
        "{'role':'assistant','content':[]}]}");
    /* text that needs escaping survives */
    REQ("{'messages':[{'role':'user','content':'a\\\"b\\\\c\\n\\u00e9'}]}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'a\\\"b\\\\c\\n\xC3\xA9'}]}]}");
}

static void test_request_images(void)
{
    REQ("{'messages':[{'role':'user','content':[{'type':'text','text':'What is it?'},"
        "{'type':'image_url','image_url':{'url':'data:image/png;base64,iVBORw0KGgo=','detail':'high'}},"
        "{'type':'image_url','image_url':{'url':'https://example.com/cat.jpg'}},"
        "{'type':'image_url','image_url':{'url':'data:image/webp;base64,UklGRg=='}}]}]}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'What is it?'},"
        "{'type':'image','source':{'type':'base64','media_type':'image/png','data':'iVBORw0KGgo='}},"
        "{'type':'image','source':{'type':'url','url':'https://example.com/cat.jpg'}},"
        "{'type':'image','source':{'type':'base64','media_type':'image/webp','data':'UklGRg=='}}]}]}");
#define IMG(url) "{'messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'" url "'}}]}]}"
    UNSUP(IMG("http://example.com/cat.jpg"), "messages[0].content[0].image_url.url");
    UNSUP(IMG("ftp://example.com/cat.jpg"), "messages[0].content[0].image_url.url");
    UNSUP(IMG("data:image/bmp;base64,Qk0="), "messages[0].content[0].image_url.url");
    UNSUP(IMG("data:image/png,rawbytes"), "messages[0].content[0].image_url.url");
    UNSUP(IMG("data:text/plain;base64,aGk="), "messages[0].content[0].image_url.url");
    INVAL(IMG("data:image/png;base64,"), "messages[0].content[0].image_url.url");
    INVAL("{'messages':[{'role':'user','content':[{'type':'image_url','image_url':{'detail':'low'}}]}]}",
          "messages[0].content[0].image_url.url");
    INVAL("{'messages':[{'role':'user','content':[{'type':'image_url','image_url':'https://x.io/a.png'}]}]}",
          "messages[0].content[0].image_url");
    UNSUP("{'messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'https://x.io/a.png','x':1}}]}]}",
          "messages[0].content[0].image_url.x");
    /* images only where Anthropic takes them */
    UNSUP("{'messages':[{'role':'system','content':[{'type':'image_url','image_url':{'url':'https://x.io/a.png'}}]},"
          "{'role':'user','content':'hi'}]}", "messages[0].content[0].type");
    UNSUP("{'messages':[{'role':'user','content':'hi'},{'role':'assistant','content':[{'type':'image_url',"
          "'image_url':{'url':'https://x.io/a.png'}}]}]}", "messages[1].content[0].type");
    UNSUP("{'messages':[{'role':'user','content':[{'type':'input_audio','input_audio':{'data':'x','format':'wav'}}]}]}",
          "messages[0].content[0].type");
    UNSUP("{'messages':[{'role':'user','content':[{'type':'file','file':{'file_id':'f'}}]}]}", "messages[0].content[0].type");
    UNSUP("{'messages':[{'role':'user','content':[{'type':'text','text':'a','cache_control':{'type':'ephemeral'}}]}]}",
          "messages[0].content[0].cache_control");
    INVAL("{'messages':[{'role':'user','content':[{'text':'a'}]}]}", "messages[0].content[0]");
    INVAL("{'messages':[{'role':'user','content':['a']}]}", "messages[0].content[0]");
    INVAL("{'messages':[{'role':'user','content':[{'type':'text','text':5}]}]}", "messages[0].content[0].text");
}

static void test_request_tools(void)
{
    REQ("{'model':'gpt-4o','messages':[{'role':'user','content':'Weather in Paris and Rome?'},"
        "{'role':'assistant','content':null,'tool_calls':["
        "{'id':'call_1','type':'function','function':{'name':'get_weather','arguments':'{\\\"city\\\":\\\"Paris\\\"}'}},"
        "{'id':'call_2','type':'function','function':{'name':'get_weather','arguments':'{\\\"city\\\":\\\"Rome\\\"}'}}]},"
        "{'role':'tool','tool_call_id':'call_1','content':'18C'},"
        "{'role':'tool','tool_call_id':'call_2','content':[{'type':'text','text':'21C'}]},"
        "{'role':'user','content':'Thanks'}],"
        "'tools':[{'type':'function','function':{'name':'get_weather','description':'Weather now','parameters':"
        "{'type':'object','properties':{'city':{'type':'string'}},'required':['city']},'strict':false}},"
        "{'type':'function','function':{'name':'ping'}}],'tool_choice':'auto','parallel_tool_calls':false}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'Weather in Paris and Rome?'}]},"
        "{'role':'assistant','content':[{'type':'tool_use','id':'call_1','name':'get_weather','input':{'city':'Paris'}},"
        "{'type':'tool_use','id':'call_2','name':'get_weather','input':{'city':'Rome'}}]},"
        "{'role':'user','content':[{'type':'tool_result','tool_use_id':'call_1','content':'18C'},"
        "{'type':'tool_result','tool_use_id':'call_2','content':[{'type':'text','text':'21C'}]}]},"
        "{'role':'user','content':[{'type':'text','text':'Thanks'}]}],"
        "'tools':[{'name':'get_weather','description':'Weather now','input_schema':{'type':'object','properties':"
        "{'city':{'type':'string'}},'required':['city']}},{'name':'ping','input_schema':{'type':'object'}}],"
        "'tool_choice':{'type':'auto','disable_parallel_tool_use':true}}");
    /* text beside calls; a system message between tool results does not split them; "" arguments-free input */
    REQ("{'messages':[{'role':'user','content':'go'},{'role':'assistant','content':'Let me check.','tool_calls':["
        "{'id':'c1','type':'function','function':{'name':'a','arguments':'{}'}},"
        "{'id':'c2','function':{'name':'b','arguments':' {\\\"n\\\": [1, 2.5]} '}}]},"
        "{'role':'tool','tool_call_id':'c1','content':''},{'role':'system','content':'Be careful.'},"
        "{'role':'tool','tool_call_id':'c2','content':'ok'},{'role':'assistant','content':'Done.'}]}",
        "{'model':'claude-x','max_tokens':2048,'system':[{'type':'text','text':'Be careful.'}],"
        "'messages':[{'role':'user','content':[{'type':'text','text':'go'}]},"
        "{'role':'assistant','content':[{'type':'text','text':'Let me check.'},"
        "{'type':'tool_use','id':'c1','name':'a','input':{}},{'type':'tool_use','id':'c2','name':'b','input':{'n':[1,2.5]}}]},"
        "{'role':'user','content':[{'type':'tool_result','tool_use_id':'c1','content':''},"
        "{'type':'tool_result','tool_use_id':'c2','content':'ok'}]},"
        "{'role':'assistant','content':[{'type':'text','text':'Done.'}]}]}");
    /* a user message between tool results starts a new run */
    REQ("{'messages':[{'role':'tool','tool_call_id':'c1','content':'1'},{'role':'user','content':'and'},"
        "{'role':'tool','tool_call_id':'c2','content':'2'}]}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'tool_result','tool_use_id':'c1','content':'1'}]},"
        "{'role':'user','content':[{'type':'text','text':'and'}]},"
        "{'role':'user','content':[{'type':'tool_result','tool_use_id':'c2','content':'2'}]}]}");

    /* tool_choice, both ways of each branch */
    REQ(B(TOOL), T(TOOL_OUT));
    REQ(B(TOOL ",'parallel_tool_calls':true"), T(TOOL_OUT));
    REQ(B(TOOL ",'parallel_tool_calls':false"), T(TOOL_OUT ",'tool_choice':{'type':'auto','disable_parallel_tool_use':true}"));
    REQ(B(TOOL ",'tool_choice':'auto'"), T(TOOL_OUT ",'tool_choice':{'type':'auto'}"));
    REQ(B(TOOL ",'tool_choice':'none'"), T(TOOL_OUT ",'tool_choice':{'type':'none'}"));
    REQ(B(TOOL ",'tool_choice':'none','parallel_tool_calls':false"), T(TOOL_OUT ",'tool_choice':{'type':'none'}"));
    REQ(B(TOOL ",'tool_choice':'required'"), T(TOOL_OUT ",'tool_choice':{'type':'any'}"));
    REQ(B(TOOL ",'tool_choice':'required','parallel_tool_calls':false"),
        T(TOOL_OUT ",'tool_choice':{'type':'any','disable_parallel_tool_use':true}"));
    REQ(B(TOOL ",'tool_choice':{'type':'function','function':{'name':'f'}}"), T(TOOL_OUT ",'tool_choice':{'type':'tool','name':'f'}"));
    REQ(B(TOOL ",'tool_choice':{'type':'function','function':{'name':'f'}},'parallel_tool_calls':false"),
        T(TOOL_OUT ",'tool_choice':{'type':'tool','name':'f','disable_parallel_tool_use':true}"));
    REQ(B(",'tools':[]"), T(""));
    REQ(B(",'tools':null,'tool_choice':null"), T(""));
    REQ(B(",'tool_choice':'auto','parallel_tool_calls':false"), T(""));
    REQ(B(",'tool_choice':'none'"), T(""));
    INVAL(B(",'tool_choice':'required'"), "tool_choice");
    INVAL(B(",'tool_choice':{'type':'function','function':{'name':'f'}}"), "tool_choice");
    INVAL(B(TOOL ",'tool_choice':'sometimes'"), "tool_choice");
    INVAL(B(TOOL ",'tool_choice':5"), "tool_choice");
    UNSUP(B(TOOL ",'tool_choice':{'type':'allowed_tools','allowed_tools':{}}"), "tool_choice.type");
    INVAL(B(TOOL ",'tool_choice':{'function':{'name':'f'}}"), "tool_choice.type");
    INVAL(B(TOOL ",'tool_choice':{'type':'function'}"), "tool_choice.function.name");
    UNSUP(B(TOOL ",'tool_choice':{'type':'function','function':{'name':'f'},'x':1}"), "tool_choice.x");
    INVAL(B(TOOL ",'parallel_tool_calls':'no'"), "parallel_tool_calls");

    /* tools */
    INVAL(B(",'tools':'f'"), "tools");
    INVAL(B(",'tools':[5]"), "tools[0]");
    UNSUP(B(",'tools':[{'type':'custom','custom':{'name':'f'}}]"), "tools[0].type");
    UNSUP(B(",'tools':[{'type':'function','function':{'name':'f'}},{'type':'function','function':{'name':'g','strict':true}}]"),
          "tools[1].function.strict");
    INVAL(B(",'tools':[{'type':'function','function':{'name':'f','strict':'yes'}}]"), "tools[0].function.strict");
    INVAL(B(",'tools':[{'type':'function','function':{'name':'f','parameters':'x'}}]"), "tools[0].function.parameters");
    INVAL(B(",'tools':[{'type':'function','function':{'name':'f','description':5}}]"), "tools[0].function.description");
    INVAL(B(",'tools':[{'type':'function','function':{'description':'d'}}]"), "tools[0].function.name");
    INVAL(B(",'tools':[{'type':'function'}]"), "tools[0].function");
    UNSUP(B(",'tools':[{'type':'function','function':{'name':'f','x':1}}]"), "tools[0].function.x");
    UNSUP(B(",'tools':[{'type':'function','function':{'name':'f'},'x':1}]"), "tools[0].x");

    /* assistant tool calls */
#define CALL(c) "{'messages':[{'role':'user','content':'go'},{'role':'assistant','tool_calls':[" c "]}]}"
    UNSUP(CALL("{'id':'c','type':'function','function':{'name':'f','arguments':'[1]'}}"),
          "messages[1].tool_calls[0].function.arguments");
    UNSUP(CALL("{'id':'c','type':'function','function':{'name':'f','arguments':'nope'}}"),
          "messages[1].tool_calls[0].function.arguments");
    UNSUP(CALL("{'id':'c','type':'function','function':{'name':'f','arguments':''}}"),
          "messages[1].tool_calls[0].function.arguments");
    UNSUP(CALL("{'id':'c','type':'function','function':{'name':'f','arguments':'{} x'}}"),
          "messages[1].tool_calls[0].function.arguments");
    UNSUP(CALL("{'id':'c','type':'function','function':{'name':'f','arguments':'{\\\"a\\\":\\\"\\\\u0000\\\"}'}}"),
          "messages[1].tool_calls[0].function.arguments");
    INVAL(CALL("{'id':'c','type':'function','function':{'name':'f','arguments':{}}}"),
          "messages[1].tool_calls[0].function.arguments");
    INVAL(CALL("{'id':'c','type':'function','function':{'arguments':'{}'}}"), "messages[1].tool_calls[0].function.name");
    INVAL(CALL("{'id':'c','type':'function'}"), "messages[1].tool_calls[0].function");
    INVAL(CALL("{'type':'function','function':{'name':'f','arguments':'{}'}}"), "messages[1].tool_calls[0].id");
    UNSUP(CALL("{'id':'c','type':'custom','custom':{'name':'f','input':'x'}}"), "messages[1].tool_calls[0].type");
    UNSUP(CALL("{'id':'c','type':'function','function':{'name':'f','arguments':'{}'},'x':1}"), "messages[1].tool_calls[0].x");
    INVAL(CALL("5"), "messages[1].tool_calls[0]");
    INVAL("{'messages':[{'role':'assistant','tool_calls':{}}]}", "messages[0].tool_calls");
    INVAL("{'messages':[{'role':'tool','content':'x'}]}", "messages[0].tool_call_id");
    UNSUP("{'messages':[{'role':'tool','tool_call_id':'c','content':[{'type':'image_url','image_url':{'url':'https://x.io/a.png'}}]}]}",
          "messages[0].content[0].type");
    INVAL("{'messages':[{'role':'tool','tool_call_id':'c','content':null}]}", "messages[0].content");
}

static void test_request_refusals(void)
{
    /* fields Anthropic cannot express, each against its accepted default above */
    UNSUP(B(",'n':2"), "n");
    UNSUP(B(",'logprobs':true"), "logprobs");
    UNSUP(B(",'top_logprobs':0"), "top_logprobs");
    UNSUP(B(",'logit_bias':{'50256':-100}"), "logit_bias");
    UNSUP(B(",'presence_penalty':0.5"), "presence_penalty");
    UNSUP(B(",'frequency_penalty':-1"), "frequency_penalty");
    UNSUP(B(",'seed':42"), "seed");
    UNSUP(B(",'response_format':{'type':'json_object'}"), "response_format");
    UNSUP(B(",'response_format':{'type':'json_schema','json_schema':{'name':'x','schema':{}}}"), "response_format");
    UNSUP(B(",'audio':{'voice':'alloy','format':'wav'}"), "audio");
    UNSUP(B(",'modalities':['text','audio']"), "modalities");
    UNSUP(B(",'modalities':['audio']"), "modalities");
    UNSUP(B(",'prediction':{'type':'content','content':'x'}"), "prediction");
    UNSUP(B(",'functions':[{'name':'f'}]"), "functions");
    UNSUP(B(",'function_call':'auto'"), "function_call");
    UNSUP(B(",'reasoning_effort':'low'"), "reasoning_effort");
    UNSUP(B(",'store':true"), "store");
    UNSUP(B(",'service_tier':'auto'"), "service_tier");
    UNSUP(B(",'frobnicate':1"), "frobnicate");
    UNSUP(B(",'temperature':1.5"), "temperature");
    INVAL(B(",'temperature':-0.1"), "temperature");
    INVAL(B(",'temperature':'hot'"), "temperature");
    INVAL(B(",'top_p':1.5"), "top_p");
    INVAL(B(",'stop':5"), "stop");
    INVAL(B(",'stop':['a',1]"), "stop[1]");
    INVAL(B(",'user':5"), "user");
    INVAL(B(",'safety_identifier':5"), "safety_identifier");
    INVAL(B(",'user':'a','safety_identifier':'b'"), "safety_identifier");
    INVAL(B(",'max_tokens':0"), "max_tokens");
    INVAL(B(",'max_tokens':1.5"), "max_tokens");
    INVAL(B(",'max_tokens':'10'"), "max_tokens");
    INVAL(B(",'max_tokens':1e12"), "max_tokens");
    INVAL(B(",'max_completion_tokens':-1"), "max_completion_tokens");
    INVAL(B(",'max_tokens':10,'max_completion_tokens':20"), "max_tokens");
    INVAL(B(",'stream':'yes'"), "stream");
    INVAL(B(",'stream_options':1"), "stream_options");
    UNSUP(B(",'stream':true,'stream_options':{'foo':1}"), "stream_options.foo");
    INVAL(B(",'stream':true,'stream_options':{'include_usage':'y'}"), "stream_options.include_usage");
    INVAL(B(",'store':'x'"), "store");
    INVAL(B(",'metadata':1"), "metadata");

    /* not a chat request */
    INVAL("{'model':'gpt-4o'}", "messages");
    INVAL("{'messages':'hi'}", "messages");
    INVAL("{'messages':[]}", "messages");
    INVAL("{'messages':[5]}", "messages[0]");
    INVAL("{'messages':[{'content':'x'}]}", "messages[0].role");
    INVAL("{'messages':[{'role':5,'content':'x'}]}", "messages[0].role");
    INVAL("{'messages':[{'role':'user','content':'x'},{'role':'wizard','content':'x'}]}", "messages[1].role");
    UNSUP("{'messages':[{'role':'function','name':'f','content':'x'}]}", "messages[0].role");
    UNSUP("{'messages':[{'role':'user','name':'bob','content':'x'}]}", "messages[0].name");
    UNSUP("{'messages':[{'role':'user','content':'x','cache_control':{}}]}", "messages[0].cache_control");
    UNSUP("{'messages':[{'role':'user','content':'x','tool_calls':[]}]}", "messages[0].tool_calls");
    INVAL("{'messages':[{'role':'user'}]}", "messages[0].content");
    INVAL("{'messages':[{'role':'user','content':5}]}", "messages[0].content");
    INVAL("{'messages':[{'role':'system','content':null},{'role':'user','content':'x'}]}", "messages[0].content");
    UNSUP("{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':null,'refusal':'no'}]}", "messages[1].refusal");
    UNSUP("{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':null,'audio':{'id':'a'}}]}", "messages[1].audio");
    UNSUP("{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':null,'function_call':{'name':'f','arguments':'{}'}}]}",
          "messages[1].function_call");
    UNSUP("{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':[{'type':'refusal','refusal':'no'}]}]}",
          "messages[1].content[0].type");
    REQ("{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':'y','refusal':null,'audio':null,'name':null}]}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'x'}]},"
        "{'role':'assistant','content':[{'type':'text','text':'y'}]}]}");

    /* not a JSON object, or one cJSON would cut short */
    INVAL("not json", "");
    INVAL("[{'role':'user'}]", "");
    INVAL("{'messages':[{'role':'user','content':'\xff'}]}", "");
    UNSUP("{'messages':[{'role':'user','content':'a\\u0000b'}]}", "");
    INVAL("{'messages':[{'role':'user','content':'a\\ud800b'}]}", "");
    INVAL("{'messages':[{'role':'user','content':'a\\udc00b'}]}", "");
    INVAL("{'messages':[{'role':'user','content':'a\\ud800\\u0041'}]}", "");
    REQ("{'messages':[{'role':'user','content':'\\ud83d\\ude00\\\\ud800'}]}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'\xF0\x9F\x98\x80\\\\ud800'}]}]}");
    REQ("{'messages':[{'role':'user','content':'a\\\\u0000b'}]}",
        "{'model':'claude-x','max_tokens':2048,'messages':[{'role':'user','content':[{'type':'text','text':'a\\\\u0000b'}]}]}");
}

/* ---------------------------------------------------------------- answer */

/* Whether the Anthropic message MSG answers WANT. */
static int answer_is(const char *msg, const char *want, int line)
{
    struct evbuffer *b = evbuffer_new();
    const char *in = J(0, msg);
    int rc = ops->answer(in, strlen(in), "gpt-4o", b, &usage), ok;
    if (rc != 0)
        fprintf(stderr, "line %d: answer refused\n", line);
    ok = rc == 0 && holds(b, want, line);
    evbuffer_free(b);
    return ok;
}
#define ANSWER(msg, want) CHECK(answer_is(msg, want, __LINE__))

static int not_answer(const char *msg, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    int ok;
    usage.prompt = usage.completion = usage.cached = 7;
    ok = ops->answer(msg, len, "gpt-4o", b, &usage) == -1 && evbuffer_get_length(b) == 0 && usage.prompt == -1 &&
         usage.completion == -1 && usage.cached == -1;
    evbuffer_free(b);
    return ok;
}
#define NOT_ANSWER(msg) CHECK(not_answer(J(0, msg), strlen(J(0, msg))))

static void test_answer(void)
{
    ANSWER("{'id':'msg_01','type':'message','role':'assistant','model':'claude-3','content':[{'type':'text','text':'Hello'},"
           "{'type':'text','text':' world'}],'stop_reason':'end_turn','stop_sequence':null,'usage':{'input_tokens':10,"
           "'output_tokens':5,'cache_read_input_tokens':3,'cache_creation_input_tokens':2}}",
           "{'id':'msg_01','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':'Hello world','refusal':null},'logprobs':null,'finish_reason':'stop'}],"
           "'usage':{'prompt_tokens':15,'completion_tokens':5,'total_tokens':20,'prompt_tokens_details':{'cached_tokens':3}}}");
    CHECK(usage.prompt == 15 && usage.completion == 5 && usage.cached == 3);

    /* tool use, a thinking block passed over */
    ANSWER("{'id':'msg_02','type':'message','role':'assistant','model':'claude-3','content':[{'type':'thinking',"
           "'thinking':'hmm','signature':'sig'},{'type':'text','text':'Checking.'},{'type':'tool_use','id':'toolu_1',"
           "'name':'get_weather','input':{'city':'Paris','days':2}},{'type':'tool_use','id':'toolu_2','name':'now',"
           "'input':{}}],'stop_reason':'tool_use','stop_sequence':null,'usage':{'input_tokens':20,'output_tokens':30}}",
           "{'id':'msg_02','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':'Checking.','tool_calls':[{'id':'toolu_1','type':'function','function':"
           "{'name':'get_weather','arguments':'{\\'city\\':\\'Paris\\',\\'days\\':2}'}},{'id':'toolu_2','type':'function',"
           "'function':{'name':'now','arguments':'{}'}}],'refusal':null},'logprobs':null,'finish_reason':'tool_calls'}],"
           "'usage':{'prompt_tokens':20,'completion_tokens':30,'total_tokens':50,'prompt_tokens_details':{'cached_tokens':0}}}");
    CHECK(usage.prompt == 20 && usage.completion == 30 && usage.cached == -1);

    /* no text: content null; no usage: none made up */
    ANSWER("{'id':'msg_03','type':'message','content':[{'type':'tool_use','id':'t','name':'f','input':{'a':[1,true,null]}}],"
           "'stop_reason':'tool_use'}",
           "{'id':'msg_03','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':null,'tool_calls':[{'id':'t','type':'function','function':{'name':'f',"
           "'arguments':'{\\'a\\':[1,true,null]}'}}],'refusal':null},'logprobs':null,'finish_reason':'tool_calls'}]}");
    CHECK(usage.prompt == -1 && usage.completion == -1 && usage.cached == -1);
    ANSWER("{'id':'msg_04','type':'message','content':[{'type':'text','text':''}],'stop_reason':'max_tokens'}",
           "{'id':'msg_04','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':'','refusal':null},'logprobs':null,'finish_reason':'length'}]}");

    /* every stop reason */
    static const char *const reasons[][2] = {
        { "'end_turn'", "stop" }, { "'stop_sequence'", "stop" }, { "'max_tokens'", "length" },
        { "'tool_use'", "tool_calls" }, { "'refusal'", "content_filter" }, { "'pause_turn'", "stop" },
        { "'model_context_window_exceeded'", "length" }, { "null", "stop" }, { "'something_new'", "stop" },
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        char msg[256], want[64];
        struct evbuffer *b = evbuffer_new();
        char *got;
        snprintf(msg, sizeof(msg), "{'id':'m','type':'message','content':[],'stop_reason':%s}", reasons[i][0]);
        snprintf(want, sizeof(want), "\"finish_reason\":\"%s\"", reasons[i][1]);
        CHECK(ops->answer(J(0, msg), strlen(J(0, msg)), "gpt-4o", b, &usage) == 0);
        got = drain(b);
        CHECK(strstr(got, want) != NULL);
        CHECK(strstr(got, "\"content\":null") != NULL);
        free(got);
        evbuffer_free(b);
    }

    /* not a message */
    NOT_ANSWER("{'type':'error','error':{'type':'api_error','message':'boom'}}");
    NOT_ANSWER("{'id':'m','content':[]}");
    NOT_ANSWER("{'type':'message','content':[]}");
    NOT_ANSWER("{'id':'m','type':'message','content':'hi'}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'server_tool_use','id':'s','name':'web_search','input':{}}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'tool_use','id':'t','name':'f'}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'tool_use','id':'t','name':'f','input':'x'}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'text','text':5}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[5]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'text','text':'a\\u0000b'}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'text','text':'\xc3'}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'text','text':'\\udc00'}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'text'}]}");
    NOT_ANSWER("{'id':'m','type':'message','content':[{'type':'text','text':'a'}],'usage':{'input_tokens':1}} x");

    /* the one-text-block answer is read without a tree: escapes in the text
     * and id go through as they came; escaped keys and compared strings, odd
     * counts and white space read as the long way reads them */
    ANSWER(" { 'id' : 'm\\u0031' , 'type' : 'message' , 'content' : [ { 'type' : 'text' , 'text' : 'a\\nb \\u00e9 \\'q\\' \\/' } ] } ",
           "{'id':'m\\u0031','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':'a\\nb \\u00e9 \\'q\\' \\/','refusal':null},'logprobs':null,'finish_reason':'stop'}]}");
    ANSWER("{'id':'m','typ\\u0065':'mess\\u0061ge','content':[{'t\\u0079pe':'text','text':'x'}],'stop_reason':'tool\\u005fuse'}",
           "{'id':'m','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':'x','refusal':null},'logprobs':null,'finish_reason':'tool_calls'}]}");
    ANSWER("{'id':'a','id':'b','type':'message','content':[{'type':'thinking','thinking':'t'},{'type':'text','text':'x','text':'y'}],"
           "'usage':{'input_tokens':-1,'output_tokens':1e3,'cache_read_input_tokens':'7','cache_creation_input_tokens':2,'input_tokens':9}}",
           "{'id':'a','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':'x','refusal':null},'logprobs':null,'finish_reason':'stop'}],"
           "'usage':{'prompt_tokens':0,'completion_tokens':1000,'total_tokens':1000,'prompt_tokens_details':{'cached_tokens':0}}}");
    CHECK(usage.prompt == -1 && usage.completion == 1000 && usage.cached == -1);
    ANSWER("{'id':'m','type':'message','content':[{'type':'text','text':'x'}],'usage':5}",
           "{'id':'m','object':'chat.completion','created':0,'model':'gpt-4o','choices':[{'index':0,'message':"
           "{'role':'assistant','content':'x','refusal':null},'logprobs':null,'finish_reason':'stop'}]}");
    NOT_ANSWER("<html>bad gateway</html>");
    NOT_ANSWER("");
    NOT_ANSWER("[]");
}

/* ---------------------------------------------------------------- stream */

static const char *const events[] = {
    "event: message_start\ndata: {'type':'message_start','message':{'id':'msg_s1','type':'message','role':'assistant',"
    "'content':[],'model':'claude-3','stop_reason':null,'stop_sequence':null,'usage':{'input_tokens':25,"
    "'cache_creation_input_tokens':0,'cache_read_input_tokens':5,'output_tokens':1}}}\n\n",
    "event: content_block_start\ndata: {'type':'content_block_start','index':0,'content_block':{'type':'text','text':''}}\n\n",
    "event: ping\ndata: {'type': 'ping'}\n\n",
    "event: content_block_delta\ndata: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'Let me'}}\n\n",
    "event: content_block_delta\ndata: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':' check \\'it\\'.'}}\n\n",
    "event: content_block_stop\ndata: {'type':'content_block_stop','index':0}\n\n",
    "event: content_block_start\ndata: {'type':'content_block_start','index':1,'content_block':{'type':'tool_use',"
    "'id':'toolu_9','name':'get_weather','input':{}}}\n\n",
    "event: content_block_delta\ndata: {'type':'content_block_delta','index':1,'delta':{'type':'input_json_delta','partial_json':''}}\n\n",
    "event: content_block_delta\ndata: {'type':'content_block_delta','index':1,'delta':{'type':'input_json_delta','partial_json':'{\\'city\\': '}}\n\n",
    "event: content_block_delta\ndata: {'type':'content_block_delta','index':1,'delta':{'type':'input_json_delta','partial_json':'\\'Paris\\'}'}}\n\n",
    "event: content_block_stop\ndata: {'type':'content_block_stop','index':1}\n\n",
    /* a tool without parameters: its input comes with no delta */
    "event: content_block_start\ndata: {'type':'content_block_start','index':2,'content_block':{'type':'tool_use',"
    "'id':'toolu_10','name':'now','input':{}}}\n\n",
    "event: content_block_stop\ndata: {'type':'content_block_stop','index':2}\n\n",
    "event: message_delta\ndata: {'type':'message_delta','delta':{'stop_reason':'tool_use','stop_sequence':null},"
    "'usage':{'output_tokens':42}}\n\n",
    "event: message_stop\ndata: {'type':'message_stop'}\n\n",
};

#define HEAD "data: {'id':'msg_s1','object':'chat.completion.chunk','created':0,'model':'gpt-4o',"
#define CH(delta) HEAD "'choices':[{'index':0,'delta':" delta ",'finish_reason':null}]}\n\n"
#define CHU(delta) HEAD "'choices':[{'index':0,'delta':" delta ",'finish_reason':null}],'usage':null}\n\n"

static const char *const want_plain[] = {
    CH("{'role':'assistant','content':''}"), "", "", CH("{'content':'Let me'}"), CH("{'content':' check \\'it\\'.'}"), "",
    CH("{'tool_calls':[{'index':0,'id':'toolu_9','type':'function','function':{'name':'get_weather','arguments':''}}]}"),
    "", CH("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'city\\': '}}]}"),
    CH("{'tool_calls':[{'index':0,'function':{'arguments':'\\'Paris\\'}'}}]}"), "",
    CH("{'tool_calls':[{'index':1,'id':'toolu_10','type':'function','function':{'name':'now','arguments':''}}]}"),
    CH("{'tool_calls':[{'index':1,'function':{'arguments':'{}'}}]}"),
    HEAD "'choices':[{'index':0,'delta':{},'finish_reason':'tool_calls'}]}\n\n",
    "data: [DONE]\n\n",
};

static const char *const want_usage[] = {
    CHU("{'role':'assistant','content':''}"), "", "", CHU("{'content':'Let me'}"), CHU("{'content':' check \\'it\\'.'}"), "",
    CHU("{'tool_calls':[{'index':0,'id':'toolu_9','type':'function','function':{'name':'get_weather','arguments':''}}]}"),
    "", CHU("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'city\\': '}}]}"),
    CHU("{'tool_calls':[{'index':0,'function':{'arguments':'\\'Paris\\'}'}}]}"), "",
    CHU("{'tool_calls':[{'index':1,'id':'toolu_10','type':'function','function':{'name':'now','arguments':''}}]}"),
    CHU("{'tool_calls':[{'index':1,'function':{'arguments':'{}'}}]}"),
    HEAD "'choices':[{'index':0,'delta':{},'finish_reason':'tool_calls'}],'usage':null}\n\n",
    HEAD "'choices':[],'usage':{'prompt_tokens':30,'completion_tokens':42,'total_tokens':72,"
    "'prompt_tokens_details':{'cached_tokens':5}}}\n\ndata: [DONE]\n\n",
};

/* Feeds EV (after ' -> ") to S; its return code, and OUT's new bytes compared with WANT. */
static int feed(dialect_stream_t *s, const char *ev, int want_rc, const char *want, int line)
{
    struct evbuffer *b = evbuffer_new();
    const char *in = J(0, ev);
    int rc = ops->stream_event(s, in, strlen(in), b, &usage), ok;
    if (rc != want_rc)
        fprintf(stderr, "line %d: rc %d, want %d for %s", line, rc, want_rc, in);
    ok = rc == want_rc && holds(b, want, line);
    evbuffer_free(b);
    return ok;
}
#define FEED(s, ev, rc, want) CHECK(feed(s, ev, rc, want, __LINE__))

static void run_stream(int include_usage, const char *const *want)
{
    dialect_req_info_t ri = { 1, include_usage };
    dialect_stream_t *s = ops->stream_new("gpt-4o", &ri);
    size_t n = sizeof(events) / sizeof(events[0]);
    CHECK(s != NULL);
    usage.prompt = usage.completion = usage.cached = -1;
    for (size_t i = 0; i < n; i++) {
        FEED(s, events[i], i + 1 == n ? 1 : 0, want[i]);
        if (i == 0)
            CHECK(usage.prompt == 30 && usage.cached == 5 && usage.completion == -1);
    }
    CHECK(usage.prompt == 30 && usage.completion == 42 && usage.cached == 5);
    FEED(s, events[0], -1, "");         /* nothing after the end */
    ops->stream_free(s);
}

/* A stream past message_start (and a text block's start when TEXT). */
static dialect_stream_t *started(int text)
{
    dialect_req_info_t ri = { 1, 0 };
    dialect_stream_t *s = ops->stream_new("gpt-4o", &ri);
    struct evbuffer *b = evbuffer_new();
    const char *in = J(0, events[0]);
    ops->stream_event(s, in, strlen(in), b, &usage);
    if (text) {
        in = J(0, events[1]);
        ops->stream_event(s, in, strlen(in), b, &usage);
    }
    evbuffer_free(b);
    return s;
}

static void test_stream(void)
{
    dialect_stream_t *s;
    run_stream(0, want_plain);
    run_stream(1, want_usage);
    ops->stream_free(NULL);

    /* line ends of every kind, comments, events without data, types added since */
    s = started(1);
    FEED(s, "event: ping\r\ndata: {'type':'ping'}\r\n\r\n", 0, "");
    FEED(s, ": keep-alive\n\n", 0, "");
    FEED(s, "event: ping\n\n", 0, "");
    /* a text delta in Anthropic's own spelling goes through as it came (its
     * escapes too); with its members in another order it is read whole and
     * quoted anew: the same text either way */
    FEED(s, "event: content_block_delta\rdata: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a\\nb'}}\r\r",
         0, CH("{'content':'a\\nb'}"));
    FEED(s, "data: {'index':0,'type':'content_block_delta','delta':{'text':'a\\nb','type':'text_delta'}}\n\n",
         0, CH("{'content':'a\\u000ab'}"));
    FEED(s, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'q\\\"}}'}}\n\n",
         0, CH("{'content':'q\\\"}}'}"));
    FEED(s, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':''}}\n\n", 0, "");
    FEED(s, "data: {'type':'content_block_delta','index':0,'delta':{'type':'citations_delta','citation':{}}}\n\n", 0, "");
    FEED(s, "event: brand_new\ndata: {'type':'brand_new','x':1}\n\n", 0, "");
    FEED(s, "data: {'type':'content_block_stop','index':0}\n\n", 0, "");
    /* a thinking block says nothing */
    FEED(s, "data: {'type':'content_block_start','index':1,'content_block':{'type':'thinking','thinking':''}}\n\n", 0, "");
    FEED(s, "data: {'type':'content_block_delta','index':1,'delta':{'type':'thinking_delta','thinking':'hmm'}}\n\n", 0, "");
    FEED(s, "data: {'type':'content_block_delta','index':1,'delta':{'type':'signature_delta','signature':'x'}}\n\n", 0, "");
    FEED(s, "data: {'type':'content_block_stop','index':1}\n\n", 0, "");
    /* a text block that starts with text; a tool block whose input comes whole in its start */
    FEED(s, "data: {'type':'content_block_start','index':2,'content_block':{'type':'text','text':'Hi'}}\n\n", 0,
         CH("{'content':'Hi'}"));
    FEED(s, "data: {'type':'content_block_stop','index':2}\n\n", 0, "");
    FEED(s, "data: {'type':'content_block_start','index':3,'content_block':{'type':'tool_use','id':'t1','name':'f','input':{'a':1}}}\n\n",
         0, CH("{'tool_calls':[{'index':0,'id':'t1','type':'function','function':{'name':'f','arguments':''}}]}"));
    FEED(s, "data: {'type':'content_block_stop','index':3}\n\n", 0, CH("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'a\\':1}'}}]}"));
    FEED(s, "data: {'type':'message_delta','delta':{'stop_reason':'max_tokens'},'usage':{'output_tokens':3}}\n\n", 0,
         HEAD "'choices':[{'index':0,'delta':{},'finish_reason':'length'}]}\n\n");
    FEED(s, "data: {'type':'message_stop'}\n\n", 1, "data: [DONE]\n\n");
    ops->stream_free(s);

    /* malformed: -1, nothing appended */
    s = ops->stream_new("gpt-4o", &info);
    FEED(s, events[3], -1, "");                          /* a delta before message_start */
    ops->stream_free(s);
#define BAD(text, ev)                                                                                                  \
    do {                                                                                                               \
        s = started(text);                                                                                             \
        FEED(s, ev, -1, "");                                                                                           \
        ops->stream_free(s);                                                                                           \
    } while (0)
    BAD(1, "event: content_block_delta\ndata: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a'}\n\n");
    BAD(1, "data: not json\n\n");
    BAD(1, "event: brand_new\ndata: {oops\n\n");
    BAD(1, "event: error\ndata: {'type':'error','error':{'type':'overloaded_error','message':'Overloaded'}}\n\n");
    BAD(1, "event: message_stop\ndata: {'type':'ping'}\n\n");
    BAD(1, "data: {'no_type':1}\n\n");
    BAD(1, "data: [1,2]\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':1,'delta':{'type':'text_delta','text':'a'}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'input_json_delta','partial_json':'{'}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':7}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'\xff'}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a\\u0000'}}\n\n");
    /* what the text delta's fast path must refuse as the long way does */
    BAD(1, "data: {'type':'content_block_delta','index':00,'delta':{'type':'text_delta','text':'a'}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a\x01'}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a\\x'}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a}}\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a'}}x\n\n");
    BAD(1, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'\\ud800'}}\n\n");
    BAD(1, "data: {'type':'content_block_stop','index':01}\n\n");
    BAD(1, "event: content_block_stop\ndata: {'type':'content_block_stop','index':1}\n\n");
    BAD(1, "event: ping\ndata: {'type':'content_block_stop','index':0}\n\n");
    BAD(0, "event: content_block_start\ndata: {'type':'content_block_start','index':0,'content_block':{'type':'text','text':''}}x\n\n");
    BAD(1, "data: {'type':'content_block_start','index':1,'content_block':{'type':'text','text':''}}\n\n");
    BAD(1, "data: {'type':'content_block_stop','index':1}\n\n");
    BAD(0, "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'a'}}\n\n");
    BAD(0, "data: {'type':'content_block_stop','index':0}\n\n");
    BAD(0, "data: {'type':'content_block_start','index':0,'content_block':{'type':'server_tool_use','id':'s','name':'web_search','input':{}}}\n\n");
    BAD(0, "data: {'type':'content_block_start','index':0,'content_block':{'type':'tool_use','name':'f','input':{}}}\n\n");
    BAD(0, "data: {'type':'content_block_start','content_block':{'type':'text','text':''}}\n\n");
    BAD(0, "data: {'type':'message_stop'}\n\n");            /* no message_delta said why it stopped */
    BAD(0, "data: {'type':'message_delta','delta':{'stop_reason':5}}\n\n");
    BAD(0, "data: {'type':'message_delta'}\n\n");
    BAD(0, events[0]);                                        /* a second message_start */
    s = ops->stream_new("gpt-4o", &info);
    FEED(s, "data: {'type':'message_start','message':{'type':'message'}}\n\n", -1, "");
    ops->stream_free(s);
    /* a tool block's deltas are JSON pieces only */
    s = started(0);
    FEED(s, events[6], 0, CH("{'tool_calls':[{'index':0,'id':'toolu_9','type':'function','function':{'name':'get_weather','arguments':''}}]}"));
    FEED(s, "data: {'type':'content_block_delta','index':1,'delta':{'type':'text_delta','text':'a'}}\n\n", -1, "");
    ops->stream_free(s);
    /* an open block at message_stop */
    s = started(1);
    FEED(s, events[13], 0, HEAD "'choices':[{'index':0,'delta':{},'finish_reason':'tool_calls'}]}\n\n");
    FEED(s, events[14], -1, "");
    ops->stream_free(s);
}

/* ----------------------------------------------------------------- error */

static int error_is(int status, const char *body, const char *want, int line)
{
    struct evbuffer *b = evbuffer_new();
    const char *in = J(0, body);
    int ok;
    ops->error(status, in, strlen(in), b);
    ok = holds(b, want, line);
    evbuffer_free(b);
    return ok;
}
#define ERR(status, body, want) CHECK(error_is(status, body, want, __LINE__))

static void test_error(void)
{
    static const char *const types[][2] = {
        { "invalid_request_error", "invalid_request_error" }, { "not_found_error", "invalid_request_error" },
        { "request_too_large", "invalid_request_error" }, { "permission_error", "invalid_request_error" },
        { "authentication_error", "authentication_error" }, { "rate_limit_error", "rate_limit_error" },
        { "api_error", "server_error" }, { "overloaded_error", "server_error" }, { "billing_error", "server_error" },
        { "timeout_error", "server_error" },
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        char body[256], want[256];
        snprintf(body, sizeof(body), "{'type':'error','error':{'type':'%s','message':'Something: x'}}", types[i][0]);
        snprintf(want, sizeof(want), "{'error':{'message':'Something: x','type':'%s','param':null,'code':'%s'}}",
                 types[i][1], types[i][0]);
        ERR(400, body, want);
    }
    ERR(529, "{'type':'error','error':{'type':'overloaded_error','message':'Overloaded'},'request_id':'req_1'}",
        "{'error':{'message':'Overloaded','type':'server_error','param':null,'code':'overloaded_error'}}");
    /* the message is kept, quoted again, and made valid UTF-8 */
    ERR(400, "{'type':'error','error':{'type':'invalid_request_error','message':'a \\'q\\' \\\\ \\u00e9\\n'}}",
        "{'error':{'message':'a \\'q\\' \\\\ \xC3\xA9\\u000a','type':'invalid_request_error','param':null,'code':'invalid_request_error'}}");
    ERR(400, "{'type':'error','error':{'type':'invalid_request_error','message':'bad \xff byte'}}",
        "{'error':{'message':'bad \\ufffd byte','type':'invalid_request_error','param':null,'code':'invalid_request_error'}}");
    /* not an Anthropic error: a message naming the status */
    ERR(502, "<html>bad gateway</html>",
        "{'error':{'message':'the Anthropic upstream answered 502 with a body that is not one of its errors',"
        "'type':'server_error','param':null,'code':null}}");
    ERR(429, "{'error':'slow down'}",
        "{'error':{'message':'the Anthropic upstream answered 429 with a body that is not one of its errors',"
        "'type':'rate_limit_error','param':null,'code':null}}");
    ERR(401, "", "{'error':{'message':'the Anthropic upstream answered 401 with a body that is not one of its errors',"
                 "'type':'authentication_error','param':null,'code':null}}");
    ERR(404, "{'type':'error','error':{'type':'not_found_error'}}",
        "{'error':{'message':'the Anthropic upstream answered 404 with a body that is not one of its errors',"
        "'type':'invalid_request_error','param':null,'code':null}}");
    struct evbuffer *b = evbuffer_new();
    ops->error(503, NULL, 0, b);
    CHECK(holds(b, "{'error':{'message':'the Anthropic upstream answered 503 with a body that is not one of its errors',"
                   "'type':'server_error','param':null,'code':null}}", __LINE__));
    evbuffer_free(b);
}

/* ------------------------------------------------------ out of memory */

static long allocs, fail_at;

static void *failing_malloc(size_t n)
{
    return ++allocs == fail_at ? NULL : malloc(n);
}

/* Every cJSON allocation failing in turn: each translation fails cleanly
 * (LeakSanitizer checks nothing is left behind) until there are enough. */
static void test_oom(void)
{
    cJSON_Hooks hooks = { failing_malloc, free };
    const char *body = "{'model':'gpt-4o','messages':[{'role':'system','content':'S'},{'role':'user','content':[{'type':'text',"
                       "'text':'hi'},{'type':'image_url','image_url':{'url':'data:image/png;base64,AAAA'}}]},{'role':'assistant',"
                       "'content':'x','tool_calls':[{'id':'c','type':'function','function':{'name':'f','arguments':'{\\\"a\\\":1}'}}]},"
                       "{'role':'tool','tool_call_id':'c','content':'r'}],'tools':[{'type':'function','function':{'name':'f',"
                       "'parameters':{'type':'object'}}}],'tool_choice':'required','parallel_tool_calls':false,'stop':['x'],"
                       "'user':'u','temperature':0.2,'stream':true}";
    const char *msg = "{'id':'m','type':'message','content':[{'type':'text','text':'a'},{'type':'tool_use','id':'t','name':'f',"
                      "'input':{'a':[1,2]}}],'stop_reason':'tool_use','usage':{'input_tokens':1,'output_tokens':2}}";
    char in[2048], am[1024];
    int ok_req = 0, ok_ans = 0, ok_stream = 0, clean = 1;
    snprintf(in, sizeof(in), "%s", J(0, body));
    snprintf(am, sizeof(am), "%s", J(0, msg));
    cJSON_InitHooks(&hooks);
    for (fail_at = 1; fail_at < 500 && !(ok_req && ok_ans && ok_stream); fail_at++) {
        struct evbuffer *b = evbuffer_new();
        dialect_req_opts_t o = { "claude-x", 100 };
        dialect_req_info_t ri = { 1, 1 };
        dialect_stream_t *st;
        int rc;
        allocs = 0;
        rc = ops->request(in, strlen(in), &o, b, &info, &err);
        if (rc == 0)
            ok_req = 1;
        else if (!err.code || evbuffer_get_length(b) != 0)
            clean = 0;
        evbuffer_drain(b, evbuffer_get_length(b));
        allocs = 0;
        rc = ops->answer(am, strlen(am), "gpt-4o", b, &usage);
        if (rc == 0)
            ok_ans = 1;
        else if (evbuffer_get_length(b) != 0)
            clean = 0;
        evbuffer_drain(b, evbuffer_get_length(b));
        allocs = 0;
        if ((st = ops->stream_new("gpt-4o", &ri)) != NULL) {
            size_t n = sizeof(events) / sizeof(events[0]), i;
            for (i = 0; i < n; i++) {
                const char *ev = J(0, events[i]);
                size_t before = evbuffer_get_length(b);
                rc = ops->stream_event(st, ev, strlen(ev), b, &usage);
                if (rc < 0) {
                    if (evbuffer_get_length(b) != before)
                        clean = 0;
                    break;
                }
            }
            if (i == n)
                ok_stream = 1;
            ops->stream_free(st);
        }
        evbuffer_free(b);
    }
    cJSON_InitHooks(NULL);
    CHECK(ok_req && ok_ans && ok_stream);
    CHECK(clean);
    CHECK(fail_at > 10);
}

/* BODY through the usual way and the long way: whether the usual way took
 * it (TAKEN), and then that both wrote the same bytes and the same info. */
static int usual_is_long(const char *body, int taken, int line)
{
    struct evbuffer *a = evbuffer_new(), *b = evbuffer_new();
    dialect_req_opts_t o = { "claude-x", default_max };
    dialect_req_info_t ia, ib;
    const char *in = J(0, body);
    int got = request_usual(in, strlen(in), &o, a, &ia), ok = got == taken;
    if (ok && got) {
        char *x = drain(a), *y;
        ok = request_long(in, strlen(in), &o, b, &ib, &err) == 0 && ia.stream == ib.stream &&
             ia.include_usage == ib.include_usage;
        y = drain(b);
        if (!ok || strcmp(x, y) != 0) {
            fprintf(stderr, "line %d: %s\n  usual: %s\n  long:  %s\n", line, in, x, y);
            ok = 0;
        }
        free(x);
        free(y);
    } else if (!ok) {
        fprintf(stderr, "line %d: %s: the usual way %s it\n", line, in, got ? "took" : "did not take");
    }
    evbuffer_free(a);
    evbuffer_free(b);
    return ok;
}
#define USUAL(body) CHECK(usual_is_long(body, 1, __LINE__))
#define LONG(body) CHECK(usual_is_long(body, 0, __LINE__))

static void test_request_usual(void)
{
    USUAL(B(""));
    USUAL(B(",'stream':true"));
    USUAL(B(",'stream':false,'stream_options':{'include_usage':true}"));
    USUAL(B(",'stream':true,'stream_options':{'include_usage':true}"));
    USUAL(B(",'stream':true,'stream_options':{'include_usage':false}"));
    USUAL(B(",'stream':true,'stream_options':{}"));
    USUAL(B(",'max_tokens':1"));
    USUAL(B(",'max_tokens':2147483647"));
    USUAL(B(",'max_completion_tokens':77"));
    USUAL(B(",'max_tokens':5,'max_completion_tokens':5"));
    USUAL(B(",'user':'u-1'"));
    USUAL(B(",'user':''"));
    USUAL("{'model':'gpt-4o','messages':[{'role':'system','content':'Be brief.'},{'role':'user','content':'Hi'},"
          "{'role':'developer','content':''},{'content':'Salut','role':'assistant'},{'role':'system','content':'Fr.'},"
          "{'role':'user','content':''},{'role':'assistant','content':'a\\\"b\\\\c\\n\\t\\r\\b\\f'}],"
          "'stream':true,'user':'x\\ny','max_tokens':100}");
    USUAL("{'messages':[{'role':'user','content':'caf\xC3\xA9 \xE2\x82\xAC'}],'model':null}");
    USUAL(" { 'model' : 'm' , 'messages' : [ { 'role' : 'user' , 'content' : 'hi' } ] } ");
    default_max = 0;
    USUAL(B(""));
    default_max = 2048;
    /* anything else takes the long way */
    LONG(B(",'temperature':0.5"));
    LONG(B(",'tools':[]"));
    LONG(B(",'stream':null"));
    LONG(B(",'stream':1"));
    LONG(B(",'stream_options':{'include_usage':true,'include_obfuscation':true}"));
    LONG(B(",'max_tokens':0"));
    LONG(B(",'max_tokens':1.0"));
    LONG(B(",'max_tokens':2147483648"));
    LONG(B(",'max_tokens':5,'max_completion_tokens':6"));
    LONG(B(",'model':'again'"));
    LONG(B(",'\\u0075ser':'u'"));
    LONG(B(",'user':'\\u00e9'"));
    LONG(B(",'user':7"));
    LONG("{'messages':[{'role':'user','content':'a\\/b'}]}");
    LONG("{'messages':[{'role':'user','content':'\\u00e9'}]}");
    LONG("{'messages':[{'role':'us\\u0065r','content':'hi'}]}");
    LONG("{'messages':[{'role':'user','content':'hi','name':'n'}]}");
    LONG("{'messages':[{'role':'user','content':'hi','role':'user'}]}");
    LONG("{'messages':[{'role':'tool','content':'hi'}]}");
    LONG("{'messages':[{'role':'user','content':[{'type':'text','text':'hi'}]}]}");
    LONG("{'messages':[{'role':'assistant','content':null}]}");
    LONG("{'messages':[{'role':'user'}]}");
    LONG("{'messages':[]}");
    LONG("{'messages':{}}");
    LONG("{'model':'m'}");
    LONG("[]");
    LONG("{'messages':[{'role':'user','content':'hi'}]} x");
    LONG("{'messages':[{'role':'user','content':'\\u0000'}]}");
}

int main(void)
{
    test_request_text();
    test_request_usual();
    test_request_images();
    test_request_tools();
    test_request_refusals();
    test_answer();
    test_stream();
    test_error();
    test_oom();
    DONE();
}
