from edgeblood.cli import main

main()
