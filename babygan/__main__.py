from babygan.cli.entry import run

run()
