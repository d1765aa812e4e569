from gantrans.cli import main

main()
