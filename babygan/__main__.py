from babygan.cli import main

main()
