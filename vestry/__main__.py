from vestry.cli import main

main()
