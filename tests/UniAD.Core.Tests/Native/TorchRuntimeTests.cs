using System.Runtime.InteropServices;
using UniAD.Core.Native;

namespace UniAD.Core.Tests.Native;

public sealed class TorchRuntimeTests
{
    [Fact]
    public void Libtorch_loads_here_and_failures_are_explained()
    {
        TorchRuntime.EnsureLoaded(); // this machine's output is patched by the build step

        var glibcxx = TorchRuntime.Explain("/app/libLibTorchSharp.so: /lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found", "doesn't contain a reference to libtorch-cpu-linux-x64", "/app/libLibTorchSharp.so", Architecture.X64, "linux-x64");
        Assert.Contains("/app/libLibTorchSharp.so needs a newer libstdc++", glibcxx);
        Assert.Contains("version `GLIBCXX_3.4.32' not found", glibcxx);
        Assert.Contains("UniADGlibcxxPatch", glibcxx);

        var arm = TorchRuntime.Explain(null, "doesn't contain a reference to libtorch-cpu-linux-arm64", null, Architecture.Arm64, "linux-arm64");
        Assert.Contains("no libtorch for linux-arm64 (Arm64)", arm);
        Assert.Contains("UniAD.Onnx", arm);

        var missing = TorchRuntime.Explain(null, "doesn't contain a reference to libtorch-cpu-linux-x64\nmore", null, Architecture.X64, "linux-x64");
        Assert.Contains("TorchSharp-cpu", missing);
        Assert.EndsWith("doesn't contain a reference to libtorch-cpu-linux-x64", missing);
    }
}
