from devmetrics.cli import main

main()
