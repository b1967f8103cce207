"""The README's main command runs end to end (short mode)."""

from fasa_fast import demo


def test_demo_runs_end_to_end(capsys):
    demo.main(["--epochs", "2", "--classes", "9"])
    out = capsys.readouterr().out
    assert "softmax CE + FASA (FA)" in out
    fasa_row = next(line for line in out.splitlines() if line.startswith("softmax CE + FASA"))
    assert int(fasa_row.split()[-1]) > 0  # virtual features were drawn and trained on
