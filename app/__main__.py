from seachat.app.cli import main

main()
