using UniAD.Hosting;
using UniAD.ScoringService;

// The UniAD scoring service: POST /score (an image in, a JSON verdict or a PNG heat map out), GET /health.
//   dotnet run -c Release --project samples/UniAD.ScoringService -- --UniAD:ModelPath=model.safetensors
// Configuration: appsettings.json, environment variables (UniAD__ModelPath=...), or the command line (--UniAD:Key=value).
// Without a model, --UniAD:Demo=true trains a tiny demo model on synthetic images first; otherwise the start fails,
// naming UniAD:ModelPath.
var builder = WebApplication.CreateBuilder(args);
if (string.IsNullOrWhiteSpace(builder.Configuration[$"{AnomalyDetectorServiceOptions.SectionName}:ModelPath"])
    && builder.Configuration.GetValue<bool>($"{AnomalyDetectorServiceOptions.SectionName}:Demo"))
{
    using var loggers = LoggerFactory.Create(b => b.AddConsole());
    var demo = DemoModel.Create(Path.Combine(Path.GetTempPath(), "uniad-scoring-demo"), loggers.CreateLogger("UniAD.ScoringService.DemoModel"));
    builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { [$"{AnomalyDetectorServiceOptions.SectionName}:ModelPath"] = demo });
}

builder.Services.AddScoringService(builder.Configuration);
var app = builder.Build();
app.UseExceptionHandler();
app.UseStatusCodePages();
app.MapScoringEndpoints();
app.Run();
