from ospp.cli import main

main()
