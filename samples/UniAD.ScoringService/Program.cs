using UniAD.Hosting;
using UniAD.ScoringService;

// The UniAD scoring service: POST /score (an image in, a JSON verdict or a PNG heat map out), GET /health.
//   dotnet run -c Release --project samples/UniAD.ScoringService -- --UniAD:ModelPath=model.safetensors
//   dotnet run -c Release --project samples/UniAD.ScoringService -- --UniAD:ModelPath=model.onnx   (ONNX Runtime)
// Configuration: appsettings.json, environment variables (UniAD__ModelPath=...), or the command line (--UniAD:Key=value).
// UniAD:Runtime (torch | onnx) chooses the runtime; by default a model path ending with .onnx is scored on ONNX Runtime
// (options under UniAD:Onnx), anything else on libtorch. Built with -p:UniADScoringRuntime=onnx, the service ships no
// libtorch and serves .onnx files only.
// Without a model, --UniAD:Demo=true trains a tiny demo model on synthetic images first (with UniAD:Runtime=onnx, exported
// to ONNX; both need libtorch); otherwise the start fails, naming UniAD:ModelPath.
var builder = WebApplication.CreateBuilder(args);
if (string.IsNullOrWhiteSpace(builder.Configuration[$"{AnomalyDetectorServiceOptions.SectionName}:ModelPath"])
    && builder.Configuration.GetValue<bool>($"{AnomalyDetectorServiceOptions.SectionName}:Demo"))
{
#if UNIAD_ONNX_ONLY
    throw new InvalidOperationException("UniAD:Demo trains the demo model with libtorch, which this ONNX-only build does not ship: set UniAD:ModelPath to an .onnx file.");
#else
    using var loggers = LoggerFactory.Create(b => b.AddConsole());
    bool onnx = ScoringEndpoints.Runtime(builder.Configuration) == "onnx";
    var demo = DemoModel.Create(Path.Combine(Path.GetTempPath(), "uniad-scoring-demo"), loggers.CreateLogger("UniAD.ScoringService.DemoModel"), onnx: onnx);
    builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { [$"{AnomalyDetectorServiceOptions.SectionName}:ModelPath"] = demo });
#endif
}

builder.Services.AddScoringService(builder.Configuration);
var app = builder.Build();
app.UseExceptionHandler();
app.UseStatusCodePages();
app.MapScoringEndpoints();
app.Run();
