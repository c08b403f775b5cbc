// uniad: the command-line front end of UniAD.Core (see docs/cli.md, or 'uniad --help').
//   uniad train     --data SOURCE --out MODEL [options]
//   uniad evaluate  --model MODEL --data SOURCE [--markdown FILE] [--json FILE|-] [--heatmaps DIR] [--keep-going]
//   uniad score     --model MODEL IMAGE|FOLDER... [--heatmaps DIR] [--json] [--keep-going]
//   uniad calibrate --model MODEL --data SOURCE [--method f1|far] [--rate R] [--out MODEL]
//   uniad import    --checkpoint ckpt.pth.tar --config config.json --out MODEL
// Exit codes: 0 success, 1 failure, 2 usage error, 3 some files failed (--keep-going), 130 cancelled.
using UniAD.Cli;

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // The first Ctrl+C cancels the work (exit code 130); a second one ends the process at once.
    if (!cancel.IsCancellationRequested)
    {
        e.Cancel = true;
        cancel.Cancel();
    }
};

return Cli.Run(args, Console.Out, Console.Error, cancel.Token);
