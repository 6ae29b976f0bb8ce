from debugkit.cli import main

main()
