from cdi_fuse.cli import main

main()
