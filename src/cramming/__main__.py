from cramming.cli import main

main()
